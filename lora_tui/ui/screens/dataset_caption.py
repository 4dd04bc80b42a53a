"""Auto-captioning from the dataset screen, in a child process (the app never imports torch).

:class:`AutoCaption` asks for a model and scope (:class:`AskCaption`), writes the chosen images to a
list file, and runs ``python -m lora_tui.caption PROJECT --json …``. Its JSON lines drive a progress
line under the image list; each ``written`` event re-reads just those captions (and the review
marks), so captions appear as they land. Cancelling sends SIGINT: the child writes what finished,
folds the run into one undo step and exits. Leaving the screen cancels it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from textual.widgets import Static

from lora_tui.ui.screens.caption_modal import AskCaption, CaptionRequest, load_last, save_last
from lora_tui.ui.widgets.dataset.image_list import ImageList

INTERRUPTED = (130, 143, 129)  # Ctrl-C (our cancel), SIGTERM, SIGHUP: what finished is written
REFRESH_S = 0.25


class CaptionProgress(Static):
    DEFAULT_CSS = "CaptionProgress { height: 1; padding: 0 1; background: $boost; color: $text-accent; }"


def command(root: Path, request: CaptionRequest, images_file: Path | None) -> list[str]:
    """The child's argv (the same flags as ``lora-tui caption``)."""
    argv = [sys.executable, "-m", "lora_tui.caption", str(root), "--model", request.model, "--json",
            f"--{request.mode}"]
    if images_file is not None:
        argv += ["--images-from", str(images_file), "--include-reg"]
    if request.prompt.strip():
        argv += ["--prompt", request.prompt]
    return argv + request.extra_args()


def parse(line: bytes) -> dict[str, Any] | None:
    """One JSON event, or None for anything else (a library printing to stdout)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class AutoCaption:
    """``host``: the dataset screen (``index``, ``row``, ``project``, ``marks``, ``image_list``,
    ``refresh_files``, ``update_status``, ``notify``, ``app``, ``run_worker``, ``mount``)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.process: asyncio.subprocess.Process | None = None
        self.bar: CaptionProgress | None = None
        self.written = 0
        self.skipped: list[str] = []
        self.end: dict[str, Any] | None = None
        self.cancelled = False
        self._landed: set[Path] = set()  # written, not yet re-read (re-read at most every REFRESH_S)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    # -- actions (the dataset table binds them) ---------------------------------------------------
    def auto_caption(self) -> None:
        if self.running:
            self.host.notify("auto-captioning is running: cancel it from the palette first", severity="warning")
            return
        index = self.host.index
        if index is None:
            return
        counts = {"shown": len(index.view), "image": 1 if self.host.row is not None else 0, "all": len(index.rows)}
        self.host.app.push_screen(AskCaption(load_last(self.host.project.root), counts), self._chosen)

    def cancel_caption(self) -> None:
        if not self.running:
            self.host.notify("no auto-captioning is running", timeout=3)
            return
        self.cancelled = True
        self._signal(signal.SIGINT)
        self._show("cancelling: writing what finished…")

    # -- running ------------------------------------------------------------------------------------
    def _chosen(self, request: CaptionRequest | None) -> None:
        if request is None:
            return
        root = self.host.project.root
        save_last(root, request)
        self.host.save_current()
        images_file = None
        if request.scope != "all":
            rows = [self.host.row] if request.scope == "image" and self.host.row is not None else self.host.index.view
            images_file = root / ".lora-tui" / f"caption-images-{os.getpid()}.txt"
            images_file.parent.mkdir(parents=True, exist_ok=True)
            images_file.write_text("".join(r.record.path_text + "\n" for r in rows), "utf-8")
        self.written, self.skipped, self.end, self.cancelled = 0, [], None, False
        self.host.run_worker(self._run(command(root, request, images_file), images_file), group="auto-caption",
                             exit_on_error=False)

    async def _run(self, argv: list[str], images_file: Path | None) -> None:
        self._show("auto-captioning: starting…")
        stderr = b""
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)  # an SSH hangup is ours to relay
            assert self.process.stdout is not None and self.process.stderr is not None
            err_task = asyncio.ensure_future(self.process.stderr.read())
            async for line in self.process.stdout:
                event = parse(line)
                if event is not None:
                    self._event(event)
            stderr = await err_task
            code = await self.process.wait()
        except asyncio.CancelledError:  # the screen is going away: let the child finish its writes alone
            self._signal(signal.SIGINT)
            raise
        except OSError as exc:
            self._finish(None, f"cannot start the captioner: {exc.strerror or exc}")
            return
        finally:
            if images_file is not None:
                with contextlib.suppress(OSError):
                    images_file.unlink()
        errors = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.startswith("lora-tui: ")]
        self._finish(code, next((ln for ln in errors if "error" in ln), None))

    def _signal(self, sig: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)  # type: ignore[union-attr]

    def _event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "written":
            files = event.get("caption_files", [])
            self.written += len(files)
            if not self._landed:
                self.host.set_timer(REFRESH_S, self._show_landed)
            self._landed.update(Path(p) for p in files)
        elif kind == "progress" and not self.cancelled:
            from lora_tui.caption.progress import bar_line  # light: no model library

            self._show(bar_line(event["done"], event["total"], event.get("rate"), event.get("eta_s")))
        elif kind == "skip":
            self.skipped.append(str(event.get("reason", "")))
        elif kind == "start" and not self.cancelled:
            self._show(f"auto-captioning {event.get('total', 0)} images with {event.get('model', '')}…")
        elif kind == "message" and not self.cancelled:
            self._show(str(event.get("text", "")))
        elif kind == "end":
            self.end = event

    def _show_landed(self) -> None:
        """Re-read the captions written since the last time, and the review marks."""
        landed, self._landed = self._landed, set()
        self.host.marks.reload()
        if landed:
            self.host.refresh_files(sorted(landed))
        self.host.image_list.refresh()

    def _show(self, text: str) -> None:
        if self.bar is None:
            self.bar = CaptionProgress(text, markup=False)
            with contextlib.suppress(Exception):
                self.host.mount(self.bar, after=self.host.query_one(ImageList).parent)
            return
        self.bar.update(text)

    def _finish(self, code: int | None, error: str | None) -> None:
        if self.bar is not None:
            self.bar.remove()
            self.bar = None
        self._show_landed()
        self.host.update_status()
        if error and code not in (0, 3, *INTERRUPTED):
            self.host.notify(error.removeprefix("lora-tui: "), severity="error", markup=False, timeout=15)
            return
        end = self.end or {}
        what = "cancelled: " if code == 130 else "stopped by a signal: " if code in INTERRUPTED else ""
        text = f"{what}auto-captioned {end.get('written', self.written)} images, marked needs-review"
        if end.get("written", self.written):
            text += " (v shows them first; u undoes the whole run)"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped: " + "; ".join(self.skipped[:3])
        self.host.notify(text, severity="warning" if self.skipped else "information", markup=False, timeout=12)

"""How a captioning run reports itself: a progress bar for people, JSON lines for the TUI and scripts.

The bar (images/s and ETA) redraws in place on a terminal, at most a few times a second, and prints a
plain line every 10% when stderr is a file. ``--json`` prints one object per line on stdout, flushed:
``start``, ``caption`` (as each is made), ``written`` (once it is on disk), ``skip``, ``progress``, ``end``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def bar_line(done: int, total: int, rate: float | None, eta: float | None, width: int = 24) -> str:
    frac = done / total if total else 1.0
    filled = int(frac * width)
    bar = "█" * filled + "░" * (width - filled)
    speed = f"{rate:.1f} img/s" if rate else "-- img/s"
    return f"captioning {done}/{total} ▕{bar}▏ {frac:4.0%}  {speed}  ETA {eta_text(eta)}"


class Reporter:
    """Receives the run's events; writes the bar (text mode) or JSON lines (``json_lines``)."""

    def __init__(self, json_lines: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = json_lines
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.tty = bool(getattr(self.err, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_tenth = -1
        self._drawn = False
        self._last_done = -1
        self._lock = threading.Lock()  # the writer thread reports "written" while the main thread runs
        # the reader of our output went away (the app quit, ``| head``): the run stops like Ctrl-C.
        # Raising instead failed the writer thread on its "written" event and dropped finished captions.
        self.lost = False

    def _write(self, stream: TextIO, text: str) -> None:
        if self.lost:
            return
        try:
            stream.write(text)
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):  # EPIPE, a closed stream, a hung-up terminal (EIO)
            self.lost = True

    def _emit(self, kind: str, **data: Any) -> None:
        line = json.dumps({"event": kind, **data}, ensure_ascii=False) + "\n"
        with self._lock:
            self._write(self.out, line)

    def line(self, text: str) -> None:
        """A message for people (stderr in text mode, so stdout stays clean for pipes)."""
        if self.json:
            self._emit("message", text=text)
            return
        self._clear()
        self._write(self.err, text + "\n")

    def sample(self, text: str) -> None:
        """A dry run's "what would be written" (stdout: it is the command's result)."""
        if not self.json:
            self._clear()
            self._write(self.out, text + "\n")

    def start(self, total: int, **info: Any) -> None:
        if self.json:
            self._emit("start", total=total, **info)

    def caption(self, image: str, caption_file: str, text: str) -> None:
        if self.json:
            self._emit("caption", image=image, caption_file=caption_file, text=text)

    def written(self, images: list[str], caption_files: list[str]) -> None:
        """Captions now on disk (journaled): a watcher may re-read them."""
        if self.json and images:
            self._emit("written", images=images, caption_files=caption_files)

    def skip(self, image: str, reason: str) -> None:
        if self.json:
            self._emit("skip", image=image, reason=reason)
        else:
            self.line(f"skipped {reason}")

    def progress(self, done: int, total: int, rate: float | None, eta: float | None, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.json:
            if (final and done != self._last_done) or now - self._last_draw >= 0.5:
                self._last_draw, self._last_done = now, done
                self._emit("progress", done=done, total=total, rate=round(rate or 0.0, 3),
                           eta_s=None if eta is None else round(eta, 1))
            return
        if self.tty:
            if final or now - self._last_draw >= 0.2:
                self._last_draw = now
                self._write(self.err, "\r" + bar_line(done, total, rate, eta) + "\x1b[K")
                self._drawn = True
            return
        tenth = int(10 * done / total) if total else 10
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._write(self.err, bar_line(done, total, rate, eta) + "\n")

    def _clear(self) -> None:
        if self._drawn:
            self._write(self.err, "\r\x1b[K")
            self._drawn = False

    def end(self, summary: dict[str, Any]) -> None:
        if self.json:
            self._emit("end", **summary)
        else:
            if self._drawn:
                self._write(self.err, "\n")
                self._drawn = False

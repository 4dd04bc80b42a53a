"""Following a run in a plain terminal (``lora-tui watch``, and ``lora-tui train`` until it detaches).

A terminal gets one status line redrawn in place (progress bar, loss, lr, rate, ETA, GPU memory) with
the run's notable events (saves, samples, warnings, errors) printed above it; a pipe or a file gets
one line per update instead, at most one a second. Reading is incremental (only new lines of
events.jsonl) and drawing happens on a timer, never per event: following a fast run costs next to
nothing. The view ends when the run ends and returns the run's exit status.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from lora_tui.runs import contract, reader
from lora_tui.runs.reader import FigureTracker, RunInfo

TICK_S = 0.5
STATE_EVERY_S = 2.0


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_mb(mb: float | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def fmt_rate(steps_per_s: float | None) -> str:
    if not steps_per_s:
        return ""
    return f"{steps_per_s:.2f} it/s" if steps_per_s >= 1 else f"{1 / steps_per_s:.2f} s/it"


def gpu_text(info: RunInfo) -> str:
    if info.gpus:
        used = sum(float(g.get("used_mb") or 0) for g in info.gpus.values())
        total = sum(float(g.get("total_mb") or 0) for g in info.gpus.values())
        mine = [g.get("proc_used_mb") for g in info.gpus.values() if g.get("proc_used_mb") is not None]
        text = f"GPU {fmt_mb(used)}/{fmt_mb(total)}"
        if mine:
            text += f" (run {fmt_mb(sum(mine))})"
        if info.peak_vram_mb:
            text += f" peak {fmt_mb(info.peak_vram_mb)}"
        return text
    if info.peak_vram_mb:
        return f"GPU peak {fmt_mb(info.peak_vram_mb)}"
    return "no GPU" if info.gpu_note else ""


def progress_line(info: RunInfo, width: int | None = None, *, bar: bool = True) -> str:
    """The one-line summary of a run's progress."""
    parts = [info.state]
    total = info.total_steps
    if total:
        pct = 100 * info.step / total if total else 0
        if bar:
            cells = 20
            done = min(cells, int(cells * info.step / total))
            parts.append("▕" + "█" * done + "░" * (cells - done) + "▏")
        parts.append(f"{info.step}/{total} {pct:.0f}%")
    elif info.step:
        parts.append(f"step {info.step}")
    if info.epoch:
        parts.append(f"epoch {info.epoch}/{info.epochs}" if info.epochs else f"epoch {info.epoch}")
    if info.loss is not None:
        parts.append(f"loss {info.loss:.4f}" + (f" avg {info.loss_avg:.4f}" if info.loss_avg is not None else ""))
    elif info.loss_avg is not None:
        parts.append(f"avg loss {info.loss_avg:.4f}")
    if info.lr:
        parts.append("lr " + "/".join(f"{v:.1e}" for v in list(info.lr.values())[:2]))
    if info.steps_per_s:
        parts.append(fmt_rate(info.steps_per_s))
    if info.eta_s is not None:
        finish = datetime.fromtimestamp(time.time() + info.eta_s).strftime("%H:%M")
        parts.append(f"ETA {fmt_duration(info.eta_s)} ({finish})")
    gpu = gpu_text(info)
    if gpu:
        parts.append(gpu)
    line = " · ".join(parts)
    if width and len(line) > width:
        line = line[:max(1, width - 1)] + "…"
    return line


def event_line(event: dict[str, Any], limit: int = 600) -> str | None:
    """A notable event as a line of its own (at most ``limit`` characters); None for the ones the
    progress line already shows."""
    line = _event_text(event)
    if line is not None and len(line) > limit:
        line = line[:limit - 1] + "…"
    return line


def _event_text(event: dict[str, Any]) -> str | None:
    kind = event.get("kind")
    if kind == "start":
        epochs, per = event.get("epochs"), event.get("steps_per_epoch")
        shape = f" ({epochs} epochs × {per} steps)" if epochs and per else ""
        return f"training {event.get('total_steps')} steps{shape} with {event.get('backend') or 'the trainer'}"
    if kind == "save":
        what = "state" if event.get("type") == "state" else "LoRA"
        return f"saved {what} at step {event.get('step')}: {event.get('path')}"
    if kind == "sample":
        return f"samples at step {event.get('step')}: {len(event.get('paths') or event.get('prompts') or [])} images"
    if kind in ("warn", "error"):
        return f"{'warning' if kind == 'warn' else 'error'}: {event.get('message')}"
    if kind == "gpu" and event.get("available") is False:
        return str(event.get("reason") or "no GPU")
    return None


def end_line(info: RunInfo) -> str:
    took = fmt_duration(info.duration_s)
    head = f"{info.state} after {took}, step {info.step}" + (f"/{info.total_steps}" if info.total_steps else "")
    if info.state == "finished":
        tail = f" → {info.output}" if info.output else ""
        loss = f", loss avg {info.loss_avg:.4f}" if info.loss_avg is not None else ""
        peak = f", GPU peak {fmt_mb(info.peak_vram_mb)}" if info.peak_vram_mb else ""
        return f"{head}{loss}{peak}{tail}"
    return f"{head}: {info.reason or 'no reason recorded'}"


def exit_code_of(info: RunInfo) -> int:
    if isinstance(info.exit_code, int):
        return info.exit_code
    return 0 if info.state == "finished" else 1


def early_notes(run_dir: Path, limit: int = 200) -> list[dict[str, Any]]:
    """Warnings and errors written before the first step (read from the start of events.jsonl; at
    most ``limit`` lines, so a long run costs no more than a short one)."""
    out = []
    for number, event in enumerate(contract.iter_all_events(run_dir)):
        if event.get("kind") == "step" or number >= limit:
            break
        if event.get("kind") in ("warn", "error"):
            out.append(event)
    return out


class RunMonitor:
    """A run read once, then kept current from the new lines of its events."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        events, offset = contract.tail_events_at(self.run_dir, 1000)
        # the tail left out the start of the file (a long run): its early notes are read separately
        self.tail_started_late = len(events) >= 1000
        self.info = reader.read_run(self.run_dir, tail=0)
        self.info.events = events
        self.tracker = FigureTracker(self.info)
        for event in events:
            self.tracker.add(event)
        self.tail = contract.EventTail(self.run_dir)
        self.tail.offset = offset
        self._refresh_state(events)
        self.tracker.refresh()
        self._state_at = time.monotonic()

    def _refresh_state(self, recent: list[dict[str, Any]]) -> None:
        status, problem = contract.read_status(self.run_dir)
        state, reason, notes = reader.conclude_state(self.run_dir, status, problem, recent)
        info = self.info
        info.status, info.state, info.reason, info.notes = status, state, reason, notes
        info.started_at = status.get("started_at") or info.started_at
        info.ended_at = status.get("ended_at") or info.ended_at
        info.exit_code = status.get("exit_code") if status.get("exit_code") is not None else info.exit_code
        info.backend = status.get("backend") or info.backend
        info.peak_vram_mb = max(filter(None, [info.peak_vram_mb, status.get("peak_vram_mb")]), default=None)
        end = next((e for e in reversed(recent) if e.get("kind") == "end"), None)
        if end is not None:
            info.exit_code = end.get("exit_code", info.exit_code)
            info.ended_at = info.ended_at or end.get("t")

    def poll(self) -> list[dict[str, Any]]:
        """New events since the last poll (figures updated); the state is re-concluded every few
        seconds, or at once when an end arrives."""
        new = self.tail.read()
        for event in new:
            self.tracker.add(event)
        ended = any(e.get("kind") == "end" for e in new)
        if ended or time.monotonic() - self._state_at >= STATE_EVERY_S:
            self._state_at = time.monotonic()
            self._refresh_state(new if ended else [])
        self.tracker.refresh()
        return new

    def settle(self) -> None:
        """Wait until status.json records the end too (see ``control.settle``), then re-read it."""
        from lora_tui.runs.control import settle

        settle(self.run_dir)
        self._refresh_state(self.tail.read() or [e for e in self.info.events if e.get("kind") == "end"])

    @property
    def ended(self) -> bool:
        return self.info.state in contract.FINAL or self.info.state == "unknown"


class Printer:
    """Writes to a terminal or a pipe without ever failing the run over it (a closed terminal)."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out, self.tty = out, tty
        self.live = False  # a status line is on screen, to be overwritten
        self.broken = False

    def _write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            self.broken = True

    def line(self, text: str) -> None:
        self._write(("\r\x1b[2K" if self.live else "") + text + "\n")
        self.live = False

    def ask(self, question: str) -> None:
        """A question on a line of its own (the status line is wiped first); the answer is typed after it."""
        self._write(("\r\x1b[2K" if self.live else "\n") + question)
        self.live = False

    def status(self, text: str) -> None:
        if self.tty:
            self._write("\r\x1b[2K" + text)
            self.live = True
        else:
            self.line(text)


def follow(run_dir: Path, out: TextIO, *, tty: bool, interrupted: Callable[[], str | None] | None = None,
           tick: float = TICK_S, min_line_interval: float = 1.0, header: bool = True,
           printer: Printer | None = None) -> int:
    """Show the run until it ends; returns its exit status. ``interrupted()`` is asked every tick
    and may return ``"detach"`` (stop showing, return 0) or ``"quit"`` (return 130); it may write
    through ``printer`` (shared with the caller) so its lines never collide with the status line."""
    monitor = RunMonitor(run_dir)
    printer = printer or Printer(out, tty)
    info = monitor.info
    if header:
        printer.line(f"run {info.id} · {info.backend or '?'} · {info.model or ''}".rstrip(" ·"))
        # the warnings and errors so far (the trainer's notes, such as images it left out, come before
        # its first step and scroll out of the last few events), then the last few others
        recent = info.events[-5:]
        notes = [e for e in info.events if e.get("kind") in ("warn", "error") and e not in recent]
        if monitor.tail_started_late:
            notes = [e for e in early_notes(run_dir) if e not in notes] + notes
        for event in notes + recent:
            text = event_line(event) if event.get("kind") not in ("gpu",) else None
            if text:
                printer.line(text)
    last_step, last_line = -1, 0.0
    while True:
        for event in monitor.poll():
            text = event_line(event)
            if text and event.get("kind") != "end":
                printer.line(text)
        if monitor.ended:
            break
        if printer.broken:  # nobody reads us any more (`| head`, a closed terminal): leave the run be
            return 0
        answer = interrupted() if interrupted else None
        if answer in ("detach", "quit"):
            if printer.live:
                printer.line("")
            return 0 if answer == "detach" else 130
        now = time.monotonic()
        if tty:
            printer.status(progress_line(info, _width()))
        elif info.step != last_step and now - last_line >= min_line_interval:
            printer.line(progress_line(info, bar=False))
            last_step, last_line = info.step, now
        time.sleep(tick)
    monitor.settle()
    printer.line(end_line(info))
    return exit_code_of(info)


def _width() -> int:
    return max(20, shutil.get_terminal_size((120, 24)).columns - 1)

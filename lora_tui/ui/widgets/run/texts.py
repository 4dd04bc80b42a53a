"""What the monitor's header, GPU panel and log tail say, as Rich Text built from a RunInfo.

Kept apart from the widgets so the wording is one place and testable. Every piece of user or run
text goes in as plain Text (never markup): captions, prompts and log lines hold ``[`` and ``]``.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from rich.text import Text

from lora_tui.runs.follow import fmt_duration, fmt_mb, fmt_rate
from lora_tui.runs.logtail import ANSI, EXCEPTION, NEWLINES
from lora_tui.runs.reader import RunInfo

STATE_STYLES = {
    "running": "bold green", "starting": "bold cyan", "stopping": "bold yellow", "queued": "cyan",
    "finished": "bold green", "stopped": "bold yellow", "failed": "bold red", "crashed": "bold red",
    "unknown": "bold magenta",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def elapsed_s(info: RunInfo, now: float) -> float | None:
    if info.started_at is None:
        return None
    end = now
    if not info.active:  # an ended run: its recorded end, else its last sign of life
        last = info.events[-1].get("t") if info.events else None
        end = info.ended_at if info.ended_at is not None else (last if isinstance(last, (int, float)) else now)
    return max(0.0, end - info.started_at)


def header_text(info: RunInfo, now: float | None = None) -> Text:
    """Two lines: state, progress, rate, times; then backend, model and the reason it ended."""
    now = time.time() if now is None else now
    text = Text()
    text.append_text(state_text(info.state))
    if info.total_steps:
        pct = 100 * info.step / info.total_steps
        text.append(f"  step {info.step}/{info.total_steps} ({pct:.0f}%)")
    else:
        text.append(f"  step {info.step}")
    if info.epoch:
        text.append(f"  epoch {info.epoch}" + (f"/{info.epochs}" if info.epochs else ""))
    rate = fmt_rate(info.steps_per_s) if info.active else ""
    if rate:
        text.append(f"  {rate}")
    text.append(f"  elapsed {fmt_duration(elapsed_s(info, now))}")
    if info.active and info.eta_s is not None:
        finish = datetime.fromtimestamp(now + info.eta_s).strftime("%H:%M")
        text.append(f"  ETA {fmt_duration(info.eta_s)} (done at {finish})")
    if info.loss is not None:
        text.append(f"  loss {info.loss:.4f}")
    elif info.loss_avg is not None:  # sd-scripts reports only its running average
        text.append(f"  avg loss {info.loss_avg:.4f}")
    text.append("\n")
    text.append(f"{info.id} · {info.backend or 'backend ?'} · {Path(info.model).name if info.model else 'model ?'}",
                style="dim")
    if not info.active and info.reason and info.reason != info.state:
        text.append("\n")
        text.append(info.reason, style=STATE_STYLES.get(info.state, ""))
    for note in info.notes:
        text.append("\n" + note, style="yellow")
    return text


def gpu_text(info: RunInfo) -> Text:
    """Used/total now, this run's processes, utilisation and the run's peak; "no GPU" said plainly."""
    text = Text()
    if not info.gpus:
        if info.gpu_note:
            note = info.gpu_note
            text.append(note if note.lower().startswith("no gpu") else f"no GPU: {note}", style="bold")
        else:
            text.append("no GPU samples in this run", style="bold")
        if info.peak_vram_mb:
            text.append(f"\npeak (trainer) {fmt_mb(info.peak_vram_mb)}")
        return text
    for index, gpu in sorted(info.gpus.items()):
        used, total = gpu.get("used_mb"), gpu.get("total_mb")
        name = gpu.get("name") or f"GPU {index}"
        text.append(f"{name}: {fmt_mb(used)} / {fmt_mb(total)}", style="bold")
        if gpu.get("util_pct") is not None:
            text.append(f"  util {gpu['util_pct']:.0f}%")
        if gpu.get("proc_used_mb") is not None:
            text.append(f"\n  this run's processes {fmt_mb(gpu['proc_used_mb'])}")
        text.append("\n")
    text.append(f"run peak {fmt_mb(info.peak_vram_mb)}" if info.peak_vram_mb else "run peak ?")
    return text


TRACEBACK_START = "Traceback (most recent call last)"


def log_lines(raw: str) -> list[str]:
    """Lines as a person reads them: ANSI escapes gone, progress-bar redraws split, indentation kept."""
    return [line.rstrip() for line in NEWLINES.split(ANSI.sub("", raw)) if line.strip()]


def log_text(raw: str, lines: int) -> Text:
    """The last ``lines`` lines of a log, tracebacks (to their exception line) in red."""
    shown = log_lines(raw)[-lines:]
    text = Text(no_wrap=True, overflow="ellipsis")
    in_traceback = False
    for i, line in enumerate(shown):
        style = ""
        if TRACEBACK_START in line:
            in_traceback, style = True, "red"
        elif in_traceback:
            style = "red"
            if not line.startswith((" ", "\t")):
                in_traceback = False  # the exception line ends it
                style = "bold red"
        elif EXCEPTION.match(line.strip()) or "error" in line.lower():
            style = "bold red"
        elif "warn" in line.lower():
            style = "yellow"
        text.append(line, style=style)
        if i < len(shown) - 1:
            text.append("\n")
    if not shown:
        text.append("train.log is empty", style="dim")
    return text

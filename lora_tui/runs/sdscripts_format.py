"""What sd-scripts' console output looks like: the patterns ``sdscripts_log`` reads it with.

Kept apart from the follower's state machine so the facts can be read in one place.

Facts the parser relies on (checked against real runs of sd-scripts 48d368fa, fixtures in
tests/runs/fixtures/, and against its source):

- The bar is drawn twice per optimizer step: by `update(1)`, still showing the *previous* step's
  `avr_loss`, then by `set_postfix()` with the new one. On fast GPUs the first draw is often skipped
  (tqdm's `mininterval`), the second never is. So the step event for counter N waits for the next bar
  draw (N's own postfix draw, or a later counter) or for `finish()`, and carries the newest `avr_loss`
  shown with counter N. Its `t` is that moment, so step-based samples/saves done between the two draws
  count in the step's wall time (the bar's own elapsed/ETA exclude them).
- Step-based saves and samples happen between those two draws, so their events come *before* the step
  event of the same counter. Every event's `step` is the bar's counter at that moment.
- A Rich record can be glued to the end of a bar draw on the same line (the bar leaves the cursor at
  its end), e.g. `...avr_loss=1.13]2026-12-01 23:13:59 INFO ...`: the bar regex is anchored at line
  start and whatever follows its `]` is read as a line of its own.
- A Rich record is only known to be complete when the next line is not one of its continuation lines,
  so record-borne events (state saves, samples, 'model saved.') are emitted one line late.
- A bar draw has no line end until the next draw; a complete draw at the end of the data fed so far is
  read at once (it ends with `]`), so a slow step is not reported one step late.
- When resuming without `--skip_until_initial_step` the bar restarts at 0 with the full total and stops
  short of it; 'model saved.' is what marks success. `start` carries the resumed state's step.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

BACKEND = "sd-scripts"
MAX_LINE = 64 * 1024
MAX_RECORD_PARTS = 64
MAX_PROMPTS = 64
MAX_TEXT = 2000
RECENT_LINES = 80

OOM_ADVICE = ("out of GPU memory: lower train_batch_size (or the dataset batch_size), turn on "
              "gradient_checkpointing and cache_latents, lower the resolution, or use mixed precision "
              "(fp16/bf16)")

BREAK = re.compile(r"\r\n|\r|\n")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# The main bar, anchored at line start: 'validation steps:' and 'epoch validation steps:' also end in
# 'steps:'. Nothing depends on the bar glyphs, the rate unit (it/s, s/it, ?it/s) or the time format.
BAR = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Rich puts the message at column 29: 19-char time (blank when repeated), a space, level padded to 8, a space.
RICH_INDENT = " " * 29
RICH_HEAD = re.compile(r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d| {19}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)\Z")
SRC_TAIL = re.compile(r"(?:^|\s)([\w.\-]+\.py:\d+)\s*\Z")

SUMMARY = {
    "num_train_images": re.compile(r"num train images \* repeats / .*?: (\d+)\s*\Z"),
    "num_val_images": re.compile(r"num validation images \* repeats / .*?: (\d+)\s*\Z"),
    "num_reg_images": re.compile(r"num reg images / .*?: (\d+)\s*\Z"),
    "batches_per_epoch": re.compile(r"num batches per epoch / .*?: (\d+)\s*\Z"),
    "epochs": re.compile(r"num epochs / .*?: (\d+)\s*\Z"),
    "batch_size": re.compile(r"batch size per device / .*?: ([\d, ]+?)\s*\Z"),
    "grad_accum": re.compile(r"gradient accumulation steps / .*? = (\d+)\s*\Z"),
    "total_steps": re.compile(r"total optimization steps / .*?: (\d+)\s*\Z"),
}
EPOCH = re.compile(r"epoch (\d+)/(\d+)\Z")
STATE_SAVED = re.compile(r"save train state to (.+?)[/\\]train_state\.json at epoch (\d+) step (\d+)")
STATE_LOADED = re.compile(r"load train state from (.+?)[/\\]train_state\.json: .*?'current_step': (\d+)")
SAMPLE_STEP = re.compile(r"(\d+)\s*\Z")
# torch's messages: 'CUDA out of memory. Tried to allocate ...' (torch.OutOfMemoryError, formerly
# torch.cuda.OutOfMemoryError / RuntimeError), and the ROCm / Apple / Intel spellings.
OOM = ("CUDA out of memory", "HIP out of memory", "MPS backend out of memory", "XPU out of memory",
        "OutOfMemoryError:")


def cells(text: str) -> int:
    """Terminal cells `text` takes, as Rich counts them (CJK is two wide), to spot mid-word folds."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def english(message: str) -> str:
    """sd-scripts prints 'English / 日本語: value'; keep the English half (and the value, if any)."""
    head, sep, tail = message.partition(" / ")
    if not sep:
        return message
    value = tail.rpartition(": ")[2] if ": " in tail else ""
    return f"{head}: {value}" if value else head


@dataclass
class RichRecord:
    """A Rich log record being assembled from its head line and continuation lines."""

    level: str
    parts: list[str]
    width: int | None  # the message column's width in cells; a part that fills it was folded mid-word

    def text(self) -> str:
        out = self.parts[0] if self.parts else ""
        for prev, part in zip(self.parts, self.parts[1:]):
            folded = self.width is not None and cells(prev) >= self.width
            out = (out + part) if folded or not out else (out + " " + part.lstrip())
        return out.strip()

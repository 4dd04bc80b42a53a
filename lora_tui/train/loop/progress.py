"""What a running training tells its watchers as it goes, apart from the loop that does the training.

Per optimizer step: the `step` event (loss, epoch average, learning rates, throughput, CUDA memory),
the TensorBoard values, and at most one progress line a second with an ETA; once, before the first
step: the images left out because they cannot be read. Kept apart from ``loop.train`` so the loop
reads as the optimizer step it is; everything here only writes through the run writer and tracker.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lora_tui.train.loop.events import RunWriter
from lora_tui.train.loop.tracking import Tracker

if TYPE_CHECKING:
    from lora_tui.train.loop.setup import Setup


@dataclass
class Progress:
    """Running figures for the step events and the progress line."""

    window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=20))
    epoch_losses: list[float] = field(default_factory=list)
    last_line: float = 0.0

    def samples_per_s(self) -> float | None:
        if len(self.window) < 2:
            return None
        (t0, _), (t1, _) = self.window[0], self.window[-1]
        samples = sum(n for _, n in list(self.window)[1:])
        return samples / (t1 - t0) if t1 > t0 else None


def report_step(writer: RunWriter, tracker: Tracker, setup: Setup, progress: Progress, step: int, epoch: int,
                loss: float) -> None:
    """One finished optimizer step: its event, its curves, and the progress line when a second has passed."""
    avg = sum(progress.epoch_losses) / len(progress.epoch_losses)
    lrs = setup.learning_rates()
    sps = progress.samples_per_s()
    mem_alloc = mem_peak = None
    if torch.cuda.is_available():
        mem_alloc = round(torch.cuda.memory_allocated() / 2**20, 1)
        mem_peak = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    writer.event("step", step=step, epoch=epoch, loss=round(loss, 6), loss_avg=round(avg, 6), lr=lrs,
                 samples_per_s=round(sps, 3) if sps else None, mem_alloc_mb=mem_alloc, mem_peak_mb=mem_peak)
    writer.set_status(force=False, last_step=step)
    tracker.log(step, {"loss/current": loss, "loss/average": avg, "samples_per_s": sps,
                       **{f"lr/{name}": value for name, value in lrs.items()}})
    now = time.monotonic()
    if now - progress.last_line >= 1.0 or step == setup.total_steps:
        progress.last_line = now
        eta = ""
        if sps:
            steps_per_s = sps / max(1, setup.samples_per_step)
            remaining = (setup.total_steps - step) / steps_per_s if steps_per_s else 0
            eta = f" ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
        lr = next(iter(lrs.values())) if lrs else 0.0
        writer.say(f"step {step}/{setup.total_steps} epoch {epoch}/{max(epoch, setup.epochs)} loss {loss:.4f} "
                   f"avg {avg:.4f} lr {lr:.2e}" + (f" {sps:.2f} samples/s" if sps else "") + eta)


def report_unreadable(writer: RunWriter, unreadable: list[tuple[Path, str]]) -> None:
    """Images left out because they cannot be read: one warn event naming them, and a log line each
    (the first 50), so a dataset never shrinks without the user seeing which files went."""
    if not unreadable:
        return
    message = (f"{len(unreadable)} unreadable image(s) left out of training (empty, cut short or not an "
               f"image): {', '.join(p.name for p, _ in unreadable[:5])}{' …' if len(unreadable) > 5 else ''}")
    writer.event("warn", code="unreadable_images", message=message,
                 paths=[str(p) for p, _ in unreadable], reasons=[why for _, why in unreadable])
    writer.say(f"warning: {message}")
    for path, why in unreadable[:50]:
        writer.say(f"  left out {path}: {why}")
    if len(unreadable) > 50:
        writer.say(f"  … and {len(unreadable) - 50} more (events.jsonl lists them all)")

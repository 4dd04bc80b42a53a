"""TensorBoard logging under sd-scripts' layout: ``<logging_dir>/<log_prefix><YYYYmmddHHMMSS>/network_train``.

sd-scripts logs to TensorBoard when ``logging_dir`` is set (``log_with`` defaults to tensorboard
then); asked for explicitly without the package, that is an error, implied by logging_dir alone it is
a warning, so a recipe never loses its curves silently.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from lora_tui.core.errors import TrainError
from lora_tui.train.loop.args import TrainArgs
from lora_tui.train.loop.events import RunWriter


class Tracker:
    """Curves for TensorBoard; a write that fails (a full disk) turns them off with one warning,
    never the training."""

    def __init__(self, writer: Any = None, path: Path | None = None, events: RunWriter | None = None) -> None:
        self.writer = writer
        self.path = path
        self.events = events

    def log(self, step: int, values: dict[str, float | None]) -> None:
        if self.writer is None:
            return
        try:
            for name, value in values.items():
                if value is not None:
                    self.writer.add_scalar(name, value, step)
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        writer, self.writer = self.writer, None
        if self.events is not None:
            self.events.event("warn", code="tensorboard", message=f"TensorBoard logging stopped: {exc}")
            self.events.say(f"warning: TensorBoard logging stopped: {exc}")
        with contextlib.suppress(Exception):  # its background thread may hold the same error
            writer.close()

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
                self.writer.close()
            except OSError as exc:
                self._give_up(exc)


def open_tracker(args: TrainArgs, events: RunWriter, *, is_main: bool) -> Tracker:
    if not is_main or not args.logging_dir or args.log_with not in (None, "tensorboard"):
        return Tracker()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if args.log_with == "tensorboard":
            raise TrainError("log_with = tensorboard needs the tensorboard package",
                             hint="pip install tensorboard, or remove log_with") from None
        events.event("warn", message="logging_dir is set but tensorboard is not installed: no TensorBoard "
                                     "logs (pip install tensorboard)")
        return Tracker()
    name = f"{args.log_prefix or ''}{time.strftime('%Y%m%d%H%M%S')}"
    path = Path(args.logging_dir) / name / args.log_tracker_name
    return Tracker(SummaryWriter(log_dir=str(path)), path, events)

"""What every backend answers (see the package docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from lora_tui.core.project import Project


class Follower(Protocol):
    """Turns a trainer's raw output into run-contract events (backends whose trainer writes none)."""

    def feed(self, data: bytes, now: float) -> list[dict[str, Any]]: ...

    def finish(self, now: float) -> list[dict[str, Any]]: ...

    def failure_reason(self) -> str | None: ...


class Backend:
    name = ""
    # "events": the trainer writes events.jsonl itself; "log": the supervisor reads train.log
    progress = "events"
    # the signal that asks the trainer to stop after its step (sent to its main process only: the
    # whole process group would kill data-loader workers mid-batch); None: the one the supervisor got
    stop_signal: int | None = None
    stop_group = False

    def command(self, project: Project, dataset_config: Path, args_config: Path,
                run_dir: Path) -> tuple[list[str], Path]:
        """(argv, working folder) of the trainer for this run."""
        raise NotImplementedError

    def env(self, run_dir: Path) -> dict[str, str]:
        """Environment added for the trainer (the supervisor's own is inherited)."""
        return {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}

    def follower(self) -> Follower | None:
        return None

    def check_model(self, project: Project, model: Path | None) -> None:
        """Refuse a base model this backend cannot train (the run's effective model), in one line."""

    def check(self, project: Project) -> None:
        """Refuse a run this backend cannot start, with a one-line error."""

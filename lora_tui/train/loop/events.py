"""The trainer's side of the run contract, written through ``runs.contract`` (its only owner).

Events go to events.jsonl as they happen. status.json belongs to the supervisor when there is one
(``LORA_TUI_SUPERVISED=1``, set by it); a trainer started by hand (``accelerate launch -m
lora_tui.train --run_dir DIR``) owns it itself and rewrites it on every state change and every few
seconds with the last step. Only the main process writes: other ranks get a writer whose methods
do nothing. Writing never stops training: a full disk drops events (reported when space is back).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from lora_tui.core.fsio import WriteError
from lora_tui.runs import contract, liveness

STATUS_EVERY_S = 5.0


class RunWriter:
    """Writes the run folder's status and events; ``enabled`` False makes every call a no-op."""

    def __init__(self, run_dir: Path | None, *, enabled: bool = True, stdout: Any = None,
                 owns_status: bool | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.is_main = enabled
        self.enabled = enabled and run_dir is not None
        self.owns_status = os.environ.get("LORA_TUI_SUPERVISED") != "1" if owns_status is None else owns_status
        self.stdout = stdout if stdout is not None else sys.stdout
        self.status: dict[str, Any] = {}
        self._events: contract.EventLog | None = None
        self._last_status = 0.0
        if self.enabled:
            assert self.run_dir is not None
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._events = contract.EventLog(self.run_dir)
            self.status, _ = contract.read_status(self.run_dir)

    # -- status -----------------------------------------------------------------------------
    def set_status(self, force: bool = True, **fields: Any) -> None:
        """Merge ``fields`` into status.json; step updates are throttled unless ``force``."""
        if not self.enabled:
            return
        self.status.update(fields)
        if not self.owns_status:
            return
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        assert self.run_dir is not None
        try:
            contract.write_status(self.run_dir, self.status)
        except (WriteError, OSError) as exc:  # a full disk: the events say what happened, training goes on
            self.say(f"warning: cannot write status.json: {exc}")

    def starting(self, total_steps: int | None = None) -> None:
        self.set_status(state="starting", **liveness.identify().to_json(), pgid=os.getpgid(0),
                        started_at=self.status.get("started_at") or time.time(), ended_at=None, exit_code=None,
                        reason=None, last_step=self.status.get("last_step", 0), total_steps=total_steps)

    # -- events -----------------------------------------------------------------------------
    def event(self, kind: str, /, **fields: Any) -> None:
        if not self.enabled or self._events is None:
            return
        self._events.append(kind, **fields)

    def say(self, text: str) -> None:
        """The human progress line on stdout (rank 0 only); flushed, since stdout is often a file."""
        if self.is_main:
            with contextlib.suppress(OSError):  # a reader of our output went away: training goes on
                print(text, file=self.stdout, flush=True)

    def end(self, state: str, reason: str, exit_code: int, last_step: int) -> None:
        self.event("end", state=state, reason=reason, exit_code=exit_code, last_step=last_step)
        self.set_status(state=state, reason=reason, exit_code=exit_code, ended_at=time.time(), last_step=last_step)
        self.close()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

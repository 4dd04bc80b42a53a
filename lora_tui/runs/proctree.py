"""The processes of one launch: the trainer and everything it started.

accelerate's multi-process launcher (torch elastic) puts each worker in a process group of its own,
and a killed launcher leaves them training, orphaned. So the supervisor keeps a list of the trainer's
descendants, found by parentage while it lives and kept by (pid, start time) after, and ends the ones
left over before it records the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from lora_tui.runs import liveness


class ProcessTree:
    def __init__(self) -> None:
        self.procs: dict[int, int | None] = {}  # pid → start ticks

    def as_status(self) -> list[list[int | None]]:
        """The ``procs`` field of status.json: [[pid, start ticks], …]."""
        return [[pid, start] for pid, start in self.procs.items()]

    def _prune(self) -> None:
        self.procs = {p: s for p, s in self.procs.items() if liveness.is_alive(p, s)}

    def refresh(self, root_pid: int) -> bool:
        """Add the root's new descendants, drop the ones gone; True when the list changed."""
        before = dict(self.procs)
        for pid in liveness.descendants(root_pid):
            if pid not in self.procs:
                self.procs[pid] = liveness.start_ticks(pid)
        self._prune()
        return self.procs != before

    def kill(self) -> None:
        for pid in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def end(self, wait_s: float) -> int:
        """Give the processes ``wait_s`` to exit by themselves (after a clean end they do), then kill
        the rest and wait until they are gone; returns how many had to be killed."""
        self._prune()
        deadline = time.monotonic() + wait_s
        while self.procs and time.monotonic() < deadline:
            time.sleep(0.2)
            self._prune()
        killed = len(self.procs)
        self.kill()
        deadline = time.monotonic() + 10
        while self.procs and time.monotonic() < deadline:
            time.sleep(0.05)
            self._prune()
        return killed

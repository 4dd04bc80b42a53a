"""The trainer's side of the run contract (DESIGN.md): status.json and events.jsonl.

status.json is rewritten atomically on every state change (and every few seconds with the last
step), so a reader never sees half a file; events.jsonl gets one flushed JSON line per event. Only
the main process writes: other ranks get a writer whose methods do nothing.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lora_tui.core.fsio import atomic_write_text

STATUS_EVERY_S = 5.0


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (a NaN loss is reported by the error event anyway)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunWriter:
    """Writes the run folder's status and events; ``enabled`` False makes every call a no-op."""

    def __init__(self, run_dir: Path | None, *, enabled: bool = True, stdout: Any = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.is_main = enabled
        self.enabled = enabled and run_dir is not None
        self.stdout = stdout if stdout is not None else sys.stdout
        self.status: dict[str, Any] = {}
        self._events = None
        self._last_status = 0.0
        if self.enabled:
            assert self.run_dir is not None
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._events = open(self.run_dir / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            existing = self.run_dir / "status.json"
            if existing.exists():
                try:
                    self.status = json.loads(existing.read_text("utf-8"))
                except (OSError, ValueError):
                    self.status = {}

    # -- status -----------------------------------------------------------------------------
    def set_status(self, force: bool = True, **fields: Any) -> None:
        """Merge ``fields`` into status.json; step updates are throttled unless ``force``."""
        if not self.enabled:
            return
        self.status.update(fields)
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        assert self.run_dir is not None
        atomic_write_text(self.run_dir / "status.json", json.dumps(_clean(self.status), indent=1) + "\n")

    def starting(self, total_steps: int | None = None) -> None:
        self.set_status(state="starting", pid=os.getpid(), pgid=os.getpgid(0), host=socket.gethostname(),
                        started_at=self.status.get("started_at") or time.time(), ended_at=None, exit_code=None,
                        reason=None, last_step=self.status.get("last_step", 0), total_steps=total_steps)

    # -- events -----------------------------------------------------------------------------
    def event(self, kind: str, /, **fields: Any) -> None:
        if not self.enabled or self._events is None:
            return
        if "kind" in fields:
            raise ValueError("an event's own field cannot be called 'kind'")
        line = json.dumps(_clean({"t": round(time.time(), 3), "kind": kind, **fields}), ensure_ascii=False)
        self._events.write(line + "\n")
        self._events.flush()

    def say(self, text: str) -> None:
        """The human progress line on stdout (rank 0 only); flushed, since stdout is often a pipe."""
        if self.is_main:
            print(text, file=self.stdout, flush=True)

    def end(self, state: str, reason: str, exit_code: int, last_step: int) -> None:
        self.event("end", state=state, reason=reason, exit_code=exit_code)
        self.set_status(state=state, reason=reason, exit_code=exit_code, ended_at=time.time(), last_step=last_step)
        self.close()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

"""Running a prepared run in the foreground: output to the terminal and to train.log.

The trainer runs in its own session (process group), so a Ctrl-C reaches it once, forwarded by us,
and it stops gracefully (saves, ends as "stopped"); a second Ctrl-C is forwarded too and stops it at
once. The trainer writes status.json itself; if it dies without doing so (killed, crashed), the
status is finished here from its exit code so it never says "running" for a dead process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, TextIO

from lora_tui.core.fsio import atomic_write_text
from lora_tui.runs.rundir import Run

FINAL_STATES = ("finished", "stopped", "failed", "crashed")


def _read_status(run: Run) -> dict[str, Any]:
    try:
        return json.loads((run.dir / "status.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def run_foreground(run: Run, out: TextIO | None = None) -> int:
    """Start the run's command, tee its output, forward SIGINT/SIGTERM, return its exit code."""
    out = out or sys.stdout
    env = dict(os.environ, PYTHONUNBUFFERED="1", LORA_TUI_RUN_DIR=str(run.dir))
    log = open(run.dir / "train.log", "ab")  # noqa: SIM115 - closed below, after the child ends
    try:
        child = subprocess.Popen(run.argv, cwd=run.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    except OSError as exc:
        log.close()
        _finish(run, "failed", f"cannot start {run.argv[0]}: {exc.strerror or exc}", 127)
        return 127

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert child.stdout is not None
        for line in iter(child.stdout.readline, b""):
            log.write(line)
            log.flush()
            try:
                out.write(line.decode("utf-8", "replace"))
                out.flush()
            except (BrokenPipeError, OSError):
                pass  # the terminal went away; the log keeps everything
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.close()
    status = _read_status(run)
    if status.get("state") not in FINAL_STATES:
        reason = f"trainer exited with code {code} without finishing its status"
        _finish(run, "crashed" if code < 0 or code > 128 else "failed", reason, code)
    return code


def _finish(run: Run, state: str, reason: str, code: int) -> None:
    status = _read_status(run)
    status.update(state=state, reason=reason, exit_code=code, ended_at=time.time())
    atomic_write_text(run.dir / "status.json", json.dumps(status, indent=1) + "\n")
    with open(run.dir / "events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"t": time.time(), "kind": "end", "state": state, "reason": reason,
                            "exit_code": code}) + "\n")

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

    forwarded: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
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
        if code < 0 and -code in forwarded:  # it died of the Ctrl-C we passed on: the user stopped it
            state, reason = "stopped", f"stopped by {_signal_name(-code)} before it could save"
        elif code < 0:
            state, reason = "crashed", f"trainer killed by {_signal_name(-code)} without finishing its status"
        elif code == 0 and run.backend != "builtin":  # sd-scripts writes no status: its exit code is all we have
            state, reason = "finished", "finished"
        else:
            state = "crashed" if code > 128 else "failed"
            reason = f"trainer exited with code {code} without finishing its status"
        _finish(run, state, reason, 128 - code if code < 0 else code)
    return 128 - code if code < 0 else code  # a shell's code for "killed by signal N", never 256 - N


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_step_event(run: Run) -> int | None:
    """The step of the last ``step`` event (status.json is written every few seconds only)."""
    try:
        with open(run.dir / "events.jsonl", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("kind") == "step" and isinstance(event.get("step"), int):
            return int(event["step"])
    return None


def _finish(run: Run, state: str, reason: str, code: int) -> None:
    status = _read_status(run)
    status.update(state=state, reason=reason, exit_code=code, ended_at=time.time())
    last = _last_step_event(run)
    if last is not None and last > int(status.get("last_step") or 0):
        status["last_step"] = last
    atomic_write_text(run.dir / "status.json", json.dumps(status, indent=1) + "\n")
    with open(run.dir / "events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"t": time.time(), "kind": "end", "state": state, "reason": reason,
                            "exit_code": code}) + "\n")

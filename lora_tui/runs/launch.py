"""Starting a run's supervisor so that it outlives whoever started it.

The supervisor gets a session of its own (``setsid``: no controlling terminal, so a hang-up or a
closed terminal never reaches it), stdin from /dev/null, and its own output in the run's
supervisor.log. The caller only waits until the supervisor has taken the run over (status.json
names it), so a supervisor that cannot even start is reported at once, with its first words.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lora_tui.core.errors import LoraTuiError
from lora_tui.runs import contract, liveness
from lora_tui.runs.logtail import failure_lines

SUPERVISOR_LOG = "supervisor.log"


def spawn_supervisor(run_dir: Path, *, wait_s: float = 120.0) -> int:
    """Start the supervisor of a run in state ``queued``; returns its pid once it owns the run.

    The process started here forks the real supervisor and waits only until it has taken the run
    over, so the supervisor is nobody's child (no zombie in a long-lived caller such as the app)
    and a supervisor that fails at once is still reported, with its first words.
    """
    run_dir = Path(run_dir)
    with open(run_dir / SUPERVISOR_LOG, "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "lora_tui.runs.supervisor", "--detach", str(run_dir)],
                                 cwd=str(run_dir), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    try:
        code = child.wait(timeout=wait_s + 10)
    except subprocess.TimeoutExpired:
        code = None
    # whatever became of the process in between (killed, slow): the run's own status is the answer
    deadline = time.monotonic() + (5.0 if code is not None else 0.0)
    while True:
        status, _ = contract.read_status(run_dir)
        if isinstance(status.get("pid"), int):  # a supervisor took the run over (and may have ended it)
            return int(status["pid"])
        if status.get("state") not in (None, "queued") or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    lines = failure_lines(run_dir / SUPERVISOR_LOG)
    raise LoraTuiError(f"the run's supervisor did not start ({'still starting' if code is None else f'code {code}'}): "
                       f"{' / '.join(lines) or 'no output'}", path=run_dir / SUPERVISOR_LOG,
                       hint="see that file; the run did not start")


def kill_procs(status: dict[str, object]) -> None:
    """SIGKILL the run's other processes the supervisor recorded (accelerate's workers live in
    process groups of their own), each only if it is still that very process."""
    for pid, start in status.get("procs") or []:  # type: ignore[attr-defined]
        if liveness.is_alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def wait_until_owned(run_dir: Path, pid: int, wait_s: float) -> int:
    """In the forked-off intermediate: exit code 0 once ``pid`` owns the run, its own code if it died."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(raw) or 1
        status, _ = contract.read_status(run_dir)
        if status.get("pid") == pid:
            return 0
        time.sleep(0.02)
    return 0


def send_stop(run_dir: Path, status: dict[str, object], *, now: bool, by: str, trainer_signal: int,
              group: bool, signum: int = signal.SIGTERM) -> str:
    """Ask a running run to stop: its supervisor if it lives (``signum``, SIGTERM or SIGINT: graceful;
    SIGUSR1: at once), else the trainer itself. Returns whom it asked."""
    try:
        return _send_stop(run_dir, status, now=now, by=by, trainer_signal=trainer_signal, group=group, signum=signum)
    except PermissionError:
        raise LoraTuiError("not allowed to signal the run's processes (they belong to another user)", path=run_dir,
                           hint="run lora-tui stop as that user") from None


def _send_stop(run_dir: Path, status: dict[str, object], *, now: bool, by: str, trainer_signal: int,
               group: bool, signum: int) -> str:
    contract.write_stop_request(run_dir, "now" if now else "graceful", by)
    if liveness.status_alive(status):
        pid = int(status["pid"])  # type: ignore[arg-type]
        os.kill(pid, signal.SIGUSR1 if now else signum)
        return f"supervisor (pid {pid})"
    if status.get("trainer_pid") and liveness.status_alive(status, "trainer_"):
        pid = int(status["trainer_pid"])  # type: ignore[arg-type]
        pgid = status.get("pgid") or pid
        with contextlib.suppress(ProcessLookupError):
            if now:
                os.killpg(int(pgid), signal.SIGKILL)  # type: ignore[arg-type]
                kill_procs(status)
            elif group:
                os.killpg(int(pgid), trainer_signal)  # type: ignore[arg-type]
            else:
                os.kill(pid, trainer_signal)
        return f"trainer (pid {pid})"
    if liveness.status_alive({**status, "trainer_pid": None}) is None and status.get("pid"):
        raise LoraTuiError(f"the run is on host {status.get('host')}", path=run_dir,
                           hint="run lora-tui stop on that host")
    return ""

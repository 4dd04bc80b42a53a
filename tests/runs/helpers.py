"""Run folders made by hand around a stand-in trainer, and waiting on processes and files."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui.runs import contract, control, reader

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def project(root: Path) -> Path:
    """A folder that reads as a project (the run commands only need its lora-tui.toml)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lora-tui.toml").write_text('[project]\nname = "fake"\n', "utf-8")
    return root


def fake_run(root: Path, *trainer_args: str, run_id: str = "20260101-000000-fake", backend: str = "builtin",
             command: list[str] | None = None, launch: str = "direct") -> Path:
    """A queued run whose command is the stand-in trainer (or ``command``)."""
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    argv = command or [sys.executable, str(FAKE_TRAINER), "--run_dir", str(run_dir), *trainer_args]
    doc = {"run": {"id": run_id, "name": "fake", "backend": backend, "command": argv, "cwd": str(root),
                   "launch": launch, "created_at": time.time()},
           "overrides": {"output_dir": str(run_dir / "output")}, "dataset": {"hash": "0"}}
    (run_dir / "run.toml").write_text(tomlkit.dumps(doc), "utf-8")
    contract.write_status(run_dir, contract.new_status(state="queued", created_at=time.time(), launch=launch,
                                                       backend=backend))
    return run_dir


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(run_dir: Path) -> dict[str, Any]:
    return contract.read_status(run_dir)[0]


def events(run_dir: Path) -> list[dict[str, Any]]:
    return list(contract.iter_all_events(run_dir))


def wait_for_step(run_dir: Path, step: int = 1, timeout: float = 60.0) -> None:
    wait_until(lambda: any(e.get("kind") == "step" and e.get("step", 0) >= step for e in events(run_dir)),
               timeout, f"step {step} in {run_dir}")


def wait_for_end(run_dir: Path, timeout: float = 60.0) -> reader.RunInfo:
    """The run once readers see it ended and its supervisor (if alive) has written the end to status.json.

    Readers conclude `crashed` as soon as the trainer is gone; the supervisor records it a tick
    later, so on a loaded machine status.json can still say `running` for a moment.
    """
    info = wait_until(lambda: (lambda i: i if not i.active and i.state != "queued" else None)(reader.read_run(run_dir)),
                      timeout, f"the end of {run_dir}")
    control.settle(run_dir, timeout)
    return info


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)

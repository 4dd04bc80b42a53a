"""Kill each process of a run at random moments (seeded); afterwards every reader agrees and none
says a dead run is alive. No repair step in between: readers conclude, nobody cleans up."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_tui.runs import contract, liveness, reader
from lora_tui.runs.launch import spawn_supervisor
from tests.runs.helpers import ENV, fake_run, kill, pid_gone, project, wait_until

VICTIMS = ("trainer-KILL", "supervisor-KILL", "both-KILL", "trainer-TERM", "supervisor-TERM", "supervisor-HUP",
           "watcher-KILL")
EXPECTED = {  # what the run must end as, unless it finished before the signal landed
    "trainer-KILL": {"crashed"}, "both-KILL": {"crashed"},
    "supervisor-KILL": {"finished", "crashed"},  # crashed: killed before it could start the trainer
    "trainer-TERM": {"stopped"}, "supervisor-TERM": {"stopped"}, "supervisor-HUP": {"finished"},
    "watcher-KILL": {"finished"},
}


def _alive(status: dict) -> bool:
    return bool(liveness.status_alive(status)) or bool(status.get("trainer_pid")
                                                       and liveness.status_alive(status, "trainer_"))


@pytest.mark.slow
def test_random_kills_leave_every_reader_truthful(tmp_path: Path) -> None:
    rng = random.Random(8)
    root = project(tmp_path / "p")
    for i in range(21):
        victim = VICTIMS[i % len(VICTIMS)]
        run = fake_run(root, "--steps", "120", "--step-seconds", "0.02", run_id=f"20260101-0000{i:02d}-k")
        watcher = subprocess.Popen([sys.executable, "-m", "lora_tui", "watch", str(run)], env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spawn_supervisor(run)
        time.sleep(rng.uniform(0.0, 1.5))
        status, _ = contract.read_status(run)
        who, sig = victim.split("-")
        pids = {"trainer": [status.get("trainer_pid")], "supervisor": [status.get("pid")],
                "both": [status.get("pid"), status.get("trainer_pid")], "watcher": [watcher.pid]}[who]
        for pid in pids:
            if pid:
                kill(pid, getattr(signal, f"SIG{sig}"))
        # every process of the run ends, one way or another
        def ended(run: Path = run, trainer: int | None = status.get("trainer_pid")) -> bool:
            return not _alive(contract.read_status(run)[0]) and (not trainer or pid_gone(trainer))

        wait_until(ended, 60, f"{victim}: the run's processes to end")
        info = reader.read_run(run)
        assert info.state in EXPECTED[victim] | {"finished"}, (victim, info.state, info.reason)
        assert info.state not in contract.ACTIVE
        listed = {r.id: r.state for r in reader.list_runs(root)}
        assert listed[run.name] == info.state, victim
        raw = json.loads((run / "status.json").read_text())  # never half written
        assert isinstance(raw, dict)
        watch = subprocess.run([sys.executable, "-m", "lora_tui", "watch", str(run)], env=ENV, capture_output=True,
                               text=True, timeout=60)
        assert info.state in watch.stdout.splitlines()[-1], (victim, watch.stdout)
        watcher.kill()
        watcher.wait()

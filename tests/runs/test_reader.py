"""What every reader concludes about a run from its files and its processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lora_tui.core.errors import LoraTuiError
from lora_tui.runs import contract, liveness, reader
from lora_tui.runs.control import resolve_run
from tests.runs.helpers import project


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def _running(run_dir: Path, pid: int, **extra: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    contract.write_status(run_dir, contract.new_status(state="running", last_step=4,
                                                      **liveness.identify(pid).to_json(), **extra))
    return run_dir


def test_a_running_run_whose_process_lives_reads_running(tmp_path: Path, sleeper) -> None:
    assert reader.read_run(_running(tmp_path / "r", sleeper.pid)).state == "running"


def test_a_running_run_whose_process_is_gone_reads_crashed(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    info = reader.read_run(run)
    assert info.state == "crashed" and "after step 4" in info.reason


def test_a_zombie_counts_as_gone(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid)
    sleeper.kill()
    time.sleep(0.3)  # dead but not reaped: /proc still lists it
    assert reader.read_run(run).state == "crashed"


def test_a_reused_pid_is_not_the_run(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid)
    status, _ = contract.read_status(run)
    contract.write_status(run, {**status, "pid_start": status["pid_start"] - 1000})  # started at another time
    assert reader.read_run(run).state == "crashed"


def test_a_run_on_another_host_is_reported_as_recorded_with_a_note(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    contract.write_status(run, contract.new_status(state="running", pid=1234, pid_start=1, host="gpu-box-7"))
    info = reader.read_run(run)
    assert info.state == "running" and "gpu-box-7" in info.notes[0]


def test_the_trainers_end_event_beats_a_status_left_at_running(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid)
    contract.append_event(run, "end", state="stopped", reason="stopped by SIGTERM after step 9", exit_code=143)
    info = reader.read_run(run)
    assert (info.state, info.reason, info.exit_code) == ("stopped", "stopped by SIGTERM after step 9", 143)


def test_a_stop_request_makes_a_dead_run_read_stopped_not_crashed(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid)
    contract.write_stop_request(run, "now", "lora-tui stop --now")
    sleeper.kill()
    sleeper.wait()
    info = reader.read_run(run)
    assert info.state == "stopped" and "lora-tui stop" in info.reason


def test_a_run_nobody_will_start_reads_crashed_after_a_while(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101-000000-r"
    run.mkdir(parents=True)
    contract.write_status(run, contract.new_status(state="queued", launch="direct", created_at=time.time() - 600))
    assert reader.read_run(run).state == "crashed"
    contract.write_status(run, contract.new_status(state="queued", launch="queue", created_at=time.time() - 600))
    (run.parent / "queue.json").write_text(json.dumps({"items": [run.name]}))
    assert reader.read_run(run).state == "queued"  # waiting its turn, however long
    (run.parent / "queue.json").write_text(json.dumps({"items": []}))  # `train --queue` killed before enqueueing
    info = reader.read_run(run)
    assert info.state == "crashed" and "in no queue" in info.reason


def test_a_damaged_status_reads_unknown_unless_the_events_tell(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "status.json").write_text("garbage")
    info = reader.read_run(run)
    assert info.state == "unknown" and "not JSON" in info.reason
    contract.append_event(run, "end", state="finished", reason="finished", exit_code=0)
    assert reader.read_run(run).state == "finished"


def test_eta_comes_from_wall_clock_step_times(tmp_path: Path, sleeper) -> None:
    run = _running(tmp_path / "r", sleeper.pid, total_steps=100)
    now = time.time()
    with open(run / "events.jsonl", "w") as f:
        for step in range(1, 11):  # one step every 2 s, pauses included
            f.write(contract.event_line("step", {"step": step, "t": now - 20 + 2 * step, "loss": 0.1}).decode())
    info = reader.read_run(run)
    assert info.steps_per_s == pytest.approx(0.5) and info.eta_s == pytest.approx(180)


def test_runs_are_found_by_folder_id_prefix_or_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path / "p")
    for rid, state in (("20260101-090000-a", "finished"), ("20260101-100000-b", "failed"),
                       ("20260102-090000-c", "stopped")):
        (root / "runs" / rid).mkdir(parents=True)
        contract.write_status(root / "runs" / rid, contract.new_status(state=state))
    assert resolve_run([str(root), "20260101-10"]).name == "20260101-100000-b"
    assert resolve_run([str(root / "runs" / "20260101-090000-a")]).name == "20260101-090000-a"
    assert resolve_run([str(root)]).name == "20260102-090000-c"  # the newest, none being active
    monkeypatch.chdir(root)
    assert resolve_run(["20260102"]).name == "20260102-090000-c"
    with pytest.raises(LoraTuiError, match="matches 2 runs"):
        resolve_run([str(root), "20260101"])
    with pytest.raises(LoraTuiError, match="no run matches"):
        resolve_run([str(root), "2027"])

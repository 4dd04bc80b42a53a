"""The run commands as a user types them: runs, watch, stop, resume, diff and queue."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.runs import queue, reader
from lora_tui.runs.launch import spawn_supervisor
from tests.runs.helpers import ENV, events, fake_run, kill, pid_gone, project, status, wait_for_end, wait_until

LORA_TUI = [sys.executable, "-m", "lora_tui"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LORA_TUI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_runs_lists_newest_first_with_the_documented_json_fields(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    first = fake_run(root, "--steps", "3", run_id="20260101-000000-a")
    spawn_supervisor(first)
    wait_for_end(first)
    crashing = fake_run(root, "--steps", "9", "--crash-at", "2", run_id="20260102-000000-b")
    spawn_supervisor(crashing)
    wait_for_end(crashing)
    listed = json.loads(cli("runs", str(root), "--json").stdout)
    assert [r["id"] for r in listed] == ["20260102-000000-b", "20260101-000000-a"]
    required = {"id", "dir", "state", "backend", "step", "total_steps", "epoch", "loss", "loss_avg", "eta_s",
                "peak_vram_mb", "started_at", "ended_at", "output", "reason"}
    assert all(required <= set(r) for r in listed)
    assert listed[1]["state"] == "finished" and listed[1]["output"].endswith("fake.safetensors")
    assert listed[0]["state"] == "failed" and "crashed at step 2" in listed[0]["reason"]
    table = cli("runs", str(root)).stdout
    assert "20260101-000000-a" in table and "└ RuntimeError: fake trainer crashed at step 2" in table


def test_stop_of_a_run_that_already_ended_says_so_and_succeeds(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "2")
    spawn_supervisor(run)
    wait_for_end(run)
    result = cli("stop", str(run))
    assert result.returncode == 0 and "already ended (finished)" in result.stdout


def test_stop_waits_for_the_run_to_save_and_end(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000")
    spawn_supervisor(run)
    wait_until(lambda: status(run).get("state") == "running" or reader.read_run(run).state == "running")
    result = cli("stop", str(run))
    assert result.returncode == 0, result.stderr
    assert "asked the supervisor" in result.stdout and "stopped after" in result.stdout.splitlines()[-1]
    assert status(run)["state"] == "stopped"


def test_resume_of_a_run_without_a_saved_state_is_a_one_line_error(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "2")
    spawn_supervisor(run)
    wait_for_end(run)
    result = cli("resume", str(run))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "saved no state" in result.stderr


def test_a_run_reference_that_matches_two_runs_is_a_one_line_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    fake_run(root, run_id="20260101-000000-a")
    fake_run(root, run_id="20260101-000001-b")
    result = cli("watch", str(root), "20260101")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "matches 2 runs" in result.stderr


def test_watch_exits_with_the_runs_status(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "10", "--crash-at", "5", "--step-seconds", "0.2")
    spawn_supervisor(run)
    result = cli("watch", str(run))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith("failed after") and "crashed at step 5" in result.stdout


def test_a_queue_runs_one_after_another_and_goes_on_past_a_failure(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    runs = [fake_run(root, *args, run_id=f"2026010{i}-000000-q", launch="queue")
            for i, args in enumerate((["--steps", "10"], ["--steps", "10", "--crash-at", "3"], ["--steps", "10"]),
                                     start=1)]
    for run in runs:
        queue.enqueue(root, run.name)
    queue.start_drainer(root)
    ends = [wait_for_end(run, timeout=120) for run in runs]
    assert [e.state for e in ends] == ["finished", "failed", "finished"]
    starts = [status(run)["started_at"] for run in runs]
    assert starts == sorted(starts) and starts[1] >= status(runs[0])["ended_at"]  # never two at once
    assert queue.waiting(root) == []
    wait_until(lambda: not queue.drainer_running(root), what="the drainer to finish")


def test_a_killed_drainer_is_restarted_by_the_next_command(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    runs = [fake_run(root, "--steps", "30", run_id=f"2026010{i}-000000-q", launch="queue") for i in (1, 2)]
    for run in runs:
        queue.enqueue(root, run.name)
    queue.start_drainer(root)
    wait_until(lambda: status(runs[0]).get("pid"), what="the first run to start")
    drainer = json.loads((root / "runs" / queue.DRAINER_LOCK).read_text())["pid"]
    kill(drainer, signal.SIGKILL)
    wait_until(lambda: pid_gone(drainer) and not queue.drainer_running(root), what="the drainer to die")
    assert wait_for_end(runs[0]).state == "finished"  # its supervisor never depended on the drainer
    listed = cli("queue", str(root))
    assert "restarted" in listed.stderr and runs[1].name in listed.stdout
    assert wait_for_end(runs[1], timeout=120).state == "finished"


def test_queue_edits_reorder_and_remove_waiting_runs_while_another_run_trains(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    training = fake_run(root, "--steps", "100000", run_id="20251231-000000-now")
    spawn_supervisor(training)  # the queue waits behind it: one run at a time
    ids = [fake_run(root, run_id=f"2026010{i}-000000-q", launch="queue").name for i in (1, 2, 3)]
    for rid in ids:
        queue.enqueue(root, rid)
    assert cli("queue", str(root), "down", ids[0]).returncode == 0
    assert cli("queue", str(root), "up", "20260103").returncode == 0
    assert queue.waiting(root) == [ids[1], ids[2], ids[0]]
    assert cli("queue", str(root), "remove", ids[2]).returncode == 0
    assert queue.waiting(root) == [ids[1], ids[0]] and not (root / "runs" / ids[2]).exists()
    stopped = cli("stop", str(root), ids[0])
    assert "taken out of the queue" in stopped.stdout and queue.waiting(root) == [ids[1]]
    listed = json.loads(cli("queue", str(root), "--json").stdout)
    assert [(item["position"], item["id"]) for item in listed] == [(0, training.name), (1, ids[1])]
    cli("stop", str(training), "--now")
    assert wait_for_end(root / "runs" / ids[1], timeout=60).state == "finished"


@pytest.mark.slow
def test_diff_names_changed_settings_and_captions(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.train.trainer_helpers import tiny_project

    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 2})
    assert cli("train", str(root), "--detach", timeout=120).returncode == 0
    first = reader.run_dirs(root)[0]
    (root / "data" / "a" / "img0002.txt").write_text("sks, a new caption", "utf-8")
    text = (root / "lora-tui.toml").read_text().replace("learning_rate = 0.001", "learning_rate = 0.0005")
    (root / "lora-tui.toml").write_text(text, "utf-8")
    wait_for_end(first, timeout=180)
    assert cli("train", str(root), "--detach", timeout=120).returncode == 0
    second = reader.run_dirs(root)[0]
    wait_for_end(second, timeout=180)
    result = json.loads(cli("diff", str(root), first.name, second.name, "--json").stdout)
    assert {"key": "project.training.learning_rate", "a": 0.001, "b": 0.0005} in result["settings"]
    assert result["same_data"] is False and result["files_known"]
    assert result["captions_changed"] == [{"image": next(c["image"] for c in result["captions_changed"]),
                                           "a": "sks, tag2, red", "b": "sks, a new caption"}]
    text_out = cli("diff", str(first), str(second)).stdout
    assert "learning_rate: 0.001 → 0.0005" in text_out and "1 captions changed" in text_out
    assert [e["kind"] for e in events(second)].count("end") == 1


def test_three_names_for_one_run_is_a_one_line_error(tmp_path: Path) -> None:
    for command in ("watch", "stop", "resume"):
        result = cli(command, "a", "b", "c")
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "PROJECT RUN" in result.stderr


def test_watch_lets_go_when_nobody_reads_its_output(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000", "--step-seconds", "0.05")
    spawn_supervisor(run)
    piped = subprocess.run(f"{sys.executable} -m lora_tui watch {run} | head -n 2", shell=True, env=ENV,
                           capture_output=True, text=True, timeout=60)  # would block until the run ends
    assert len(piped.stdout.splitlines()) == 2
    cli("stop", str(run), "--now")


def test_one_damaged_run_does_not_hide_the_others(tmp_path: Path) -> None:
    from lora_tui.runs import contract

    root = project(tmp_path / "p")
    good = fake_run(root, "--steps", "2", run_id="20260101-000000-good")
    spawn_supervisor(good)
    wait_for_end(good)
    bad = root / "runs" / "20260102-000000-bad"
    bad.mkdir()
    (bad / "status.json").write_text(json.dumps({"state": "running", "last_step": "x", "started_at": "2020",
                                                 "pid": [1], "loss": 1e999}))
    with open(bad / "events.jsonl", "wb") as f:
        f.write(contract.event_line("step", {"step": 3, "loss": [1], "lr": "fast", "epoch": "two"}))
    result = cli("runs", str(root))
    assert result.returncode == 0, result.stderr
    assert "20260101-000000-good" in result.stdout and "20260102-000000-bad" in result.stdout
    listed = json.loads(cli("runs", str(root), "--json").stdout)
    assert {r["id"]: r["state"] for r in listed}["20260101-000000-good"] == "finished"


def test_a_run_taken_by_a_killed_drainer_is_started_by_the_next_one(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    run = fake_run(root, "--steps", "5", run_id="20260101-000000-q", launch="queue")
    (root / "runs" / "queue.json").write_text(json.dumps({"items": [], "current": run.name}))  # taken, not started
    listed = cli("queue", str(root))
    assert "restarted" in listed.stderr
    assert wait_for_end(run, timeout=60).state == "finished"

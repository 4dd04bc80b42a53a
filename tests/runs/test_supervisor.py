"""The supervisor owns a run from start to end, and every reader tells the truth afterwards, whatever
was killed. The trainer here is a stand-in with the real one's process behaviour (tests/runs/fake_trainer.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from lora_tui.runs import reader
from lora_tui.runs.control import stop_run
from lora_tui.runs.launch import spawn_supervisor
from tests.runs.helpers import (
    events,
    fake_run,
    kill,
    pid_gone,
    project,
    status,
    wait_for_end,
    wait_for_step,
    wait_until,
)


def test_a_supervised_run_ends_finished_with_its_output_and_one_end_event(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "5")
    supervisor = spawn_supervisor(run)
    info = wait_for_end(run)
    assert info.state == "finished" and info.exit_code == 0 and info.step == 5 and info.total_steps == 5
    final = wait_until(lambda: status(run) if status(run)["state"] == "finished" else None)
    assert final["pid"] == supervisor != final["trainer_pid"] and final["supervised"]
    assert final["output"].endswith("fake.safetensors") and final["last_step"] == 5
    assert [e["kind"] for e in events(run)].count("end") == 1
    assert "step 5/5" in (run / "train.log").read_text()


def test_a_graceful_stop_reaches_only_the_trainer_which_saves_and_ends_stopped(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000", "--workers", "2")
    spawn_supervisor(run)
    wait_for_step(run, 3)
    assert "asked the supervisor" in stop_run(run, now=False, by="test")
    info = wait_for_end(run)
    assert info.state == "stopped" and info.exit_code == 143  # 1 if a worker had been signalled too
    kinds = [(e["kind"], e.get("type")) for e in events(run)]
    assert ("save", "lora") in kinds and ("save", "state") in kinds


def test_stop_now_ends_the_trainer_at_once_and_says_so(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000")
    spawn_supervisor(run)
    wait_for_step(run, 2)
    stop_run(run, now=True, by="lora-tui stop --now")
    info = wait_for_end(run)
    assert info.state == "stopped" and "at once" in info.reason and "lora-tui stop --now" in info.reason
    assert info.exit_code == 137


def test_a_trainer_that_crashes_fails_with_its_exception_line_as_the_reason(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "10", "--crash-at", "3")
    spawn_supervisor(run)
    info = wait_for_end(run)
    assert info.state == "failed" and info.exit_code == 1
    assert info.reason == "RuntimeError: fake trainer crashed at step 3"


def test_kill_9_of_the_trainer_reads_crashed_with_the_signal_and_the_last_step(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000")
    spawn_supervisor(run)
    wait_for_step(run, 3)
    kill(status(run)["trainer_pid"])
    info = wait_for_end(run)
    assert info.state == "crashed" and info.exit_code == 137 and "SIGKILL" in info.reason
    last = max(e["step"] for e in events(run) if e["kind"] == "step")
    assert status(run)["state"] == "crashed" and status(run)["last_step"] == last >= 3


def test_kill_9_of_the_supervisor_leaves_the_trainer_training_and_readers_truthful(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "60", "--step-seconds", "0.05")
    supervisor = spawn_supervisor(run)
    wait_for_step(run, 2)
    kill(supervisor)
    wait_until(lambda: pid_gone(supervisor), what="the supervisor to die")
    during = reader.read_run(run)
    assert during.state == "running" and any("supervisor is gone" in n for n in during.notes)
    info = wait_for_end(run)
    assert info.state == "finished"  # the trainer's own end event, though status.json still says running
    assert status(run)["state"] in ("starting", "running")


def test_kill_9_of_supervisor_and_trainer_reads_crashed_in_every_reader(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    run = fake_run(root, "--steps", "100000")
    supervisor = spawn_supervisor(run)
    wait_for_step(run, 2)
    trainer = status(run)["trainer_pid"]
    kill(supervisor)
    kill(trainer)
    wait_until(lambda: pid_gone(supervisor) and pid_gone(trainer), what="both to die")
    assert reader.read_run(run).state == "crashed"
    assert [r.state for r in reader.list_runs(root)] == ["crashed"]
    watch = subprocess.run([sys.executable, "-m", "lora_tui", "watch", str(run)], capture_output=True, text=True,
                           timeout=30)
    assert watch.returncode == 1 and "crashed" in watch.stdout


def test_a_command_that_cannot_start_fails_with_127(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), command=[str(tmp_path / "no-such-trainer")])
    spawn_supervisor(run)
    info = wait_for_end(run)
    assert info.state == "failed" and info.exit_code == 127 and "no-such-trainer" in info.reason


def test_a_second_supervisor_for_the_same_run_is_refused(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "40")
    spawn_supervisor(run)
    second = subprocess.run([sys.executable, "-m", "lora_tui.runs.supervisor", str(run)], capture_output=True,
                            text=True, timeout=30)
    assert second.returncode == 3 and "already" in second.stderr
    assert wait_for_end(run).state == "finished"


def test_without_a_gpu_the_run_has_one_no_gpu_note(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "40", "--step-seconds", "0.1")
    spawn_supervisor(run)
    wait_for_end(run)
    gpu = [e for e in events(run) if e["kind"] == "gpu"]
    assert len(gpu) == 1 and gpu[0]["available"] is False and gpu[0]["reason"].startswith("no GPU")


def test_sighup_to_the_supervisor_is_ignored(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "30")
    supervisor = spawn_supervisor(run)
    wait_for_step(run, 1)
    kill(supervisor, signal.SIGHUP)
    assert wait_for_end(run).state == "finished"


def _session_workers(run: Path) -> list[int]:
    from lora_tui.runs import liveness

    return liveness.descendants(status(run)["trainer_pid"])


def test_a_killed_launcher_takes_its_workers_with_it_before_the_end_is_recorded(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000", "--session-workers", "2")
    spawn_supervisor(run)
    wait_for_step(run, 2)
    workers = wait_until(lambda: len(_session_workers(run)) == 2 and _session_workers(run), what="two workers")
    wait_until(lambda: len(status(run).get("procs") or []) == 2, what="the supervisor to record them")
    kill(status(run)["trainer_pid"])
    info = wait_for_end(run)
    assert info.state == "crashed" and all(pid_gone(w) for w in workers)
    assert any(e["kind"] == "warn" and e.get("code") == "orphans" for e in events(run))


def test_stop_now_ends_every_process_of_the_launch(tmp_path: Path) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "100000", "--session-workers", "2")
    spawn_supervisor(run)
    wait_for_step(run, 2)
    workers = wait_until(lambda: len(_session_workers(run)) == 2 and _session_workers(run), what="two workers")
    wait_until(lambda: len(status(run).get("procs") or []) == 2, what="the supervisor to record them")
    stop_run(run, now=True, by="test")
    assert wait_for_end(run).state == "stopped"
    assert all(pid_gone(w) for w in workers)


def test_a_stop_while_the_supervisor_takes_over_is_never_lost(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    for i in range(8):
        run = fake_run(root, "--steps", "100000", run_id=f"20260101-00000{i}-race")
        subprocess.Popen([sys.executable, "-m", "lora_tui.runs.supervisor", "--detach", str(run)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        stop_run(run, now=False, by="test")
        info = wait_for_end(run)
        assert info.state == "stopped", (i, info.state, info.reason)
        final = status(run)
        for key in ("pid", "trainer_pid"):
            if final.get(key):
                wait_until(lambda pid=final[key]: pid_gone(pid), what=f"{key} to end")

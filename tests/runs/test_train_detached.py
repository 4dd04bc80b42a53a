"""The real `lora-tui train` on a tiny model, tried as a user would: hang up, kill the terminal,
SIGTERM the command, detach and watch. Each test trains for real on the CPU (tens of seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.runs import reader
from tests.helpers import write_images
from tests.runs.helpers import ENV, status, wait_for_end, wait_for_step, wait_until
from tests.train.trainer_helpers import tiny_project

LORA_TUI = [sys.executable, "-m", "lora_tui"]


def _train(root: Path, *extra: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen([*LORA_TUI, "train", str(root), *extra], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def _only_run(root: Path) -> Path:
    return wait_until(lambda: next(iter(reader.run_dirs(root)), None), 60, "the run folder")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["hang-up", "kill-9"])
def test_losing_the_terminal_never_stops_the_run(sig: int, tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 30})
    command = _train(root)  # attached, in a session of its own as a login shell would be
    run = _only_run(root)
    wait_for_step(run, 1, timeout=120)
    os.killpg(command.pid, sig)  # what a dropped SSH link (HUP) or a killed terminal (KILL) does to the session
    command.communicate(timeout=30)
    info = wait_for_end(run, timeout=180)
    assert info.state == "finished" and info.step == 30
    listed = json.loads(subprocess.run([*LORA_TUI, "runs", str(root), "--json"], capture_output=True, text=True,
                                       env=ENV, timeout=60).stdout)
    assert listed[0]["state"] == "finished" and listed[0]["output"].endswith("tiny.safetensors")


@pytest.mark.slow
def test_sigterm_saves_and_ends_stopped_with_143_then_resume_carries_on(tmp_path: Path, tiny_model_dir: Path) -> None:
    # data-loader workers: a signal to the whole process group used to kill them and fail the run
    root = tiny_project(tmp_path / "p", tiny_model_dir,
                        training={"max_train_steps": 100000, "max_data_loader_n_workers": 2})
    command = _train(root)
    run = _only_run(root)
    wait_for_step(run, 2, timeout=120)
    command.send_signal(signal.SIGTERM)
    out, _ = command.communicate(timeout=120)
    assert command.returncode == 143, out
    final = status(run)
    assert final["state"] == "stopped" and "SIGTERM" in final["reason"] and "lora-tui resume" in final["reason"]
    step = final["last_step"]
    assert (run / "output" / f"tiny-step{step:08d}.safetensors").exists()
    assert (run / "state" / f"tiny-step{step:08d}-state").is_dir()
    # the hint in the reason works: a new run continues from that state, its step count carrying on
    resumed = subprocess.run([*LORA_TUI, "resume", str(run), "--max-train-steps", str(step + 3), "--detach"],
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    second = reader.run_dirs(root)[0]
    assert second != run and wait_for_end(second, timeout=180).state == "finished"
    start = next(e for e in json.loads("[" + ",".join((second / "events.jsonl").read_text().splitlines()) + "]")
                 if e["kind"] == "start")
    final = wait_until(lambda: (lambda s: s if s["state"] == "finished" else None)(status(second)))
    assert start["resumed_step"] == step and final["last_step"] == step + 3


@pytest.mark.slow
def test_detach_returns_at_once_and_watch_follows_the_run_to_its_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 60})
    started = subprocess.run([*LORA_TUI, "train", str(root), "--detach", "--name", "first try"], env=ENV,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    run = _only_run(root)
    assert run.name.endswith("-first-try") and "lora-tui watch" in started.stdout
    watch = subprocess.run([*LORA_TUI, "watch", str(root)], env=ENV, capture_output=True, text=True, timeout=300)
    assert watch.returncode == 0, watch.stdout + watch.stderr
    lines = watch.stdout.splitlines()
    assert any(line.startswith("running · ") and "/60" in line for line in lines), watch.stdout
    assert lines[-1].startswith("finished after") and lines[-1].endswith("tiny.safetensors")
    assert status(run)["state"] == "finished"


def test_train_refuses_to_start_when_check_finds_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    (root / "data" / "a" / "img0001.png").write_bytes(b"")  # a zero-byte image
    result = subprocess.run([*LORA_TUI, "train", str(root)], env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error: " in result.stderr and "img0001.png" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("lora-tui: error:")
    assert "lint error" in result.stderr and not (root / "runs").exists()


def test_the_sd_scripts_backend_without_a_checkout_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    result = subprocess.run([*LORA_TUI, "train", str(root), "--backend", "sd-scripts"], env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "sd_scripts_dir" in result.stderr


def test_train_resume_from_a_folder_that_is_not_there_is_a_one_line_error(tmp_path: Path,
                                                                         tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    result = subprocess.run([*LORA_TUI, "train", str(root), "--resume", str(tmp_path / "nope")], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no saved state" in result.stderr
    (tmp_path / "not-a-state").mkdir()
    result = subprocess.run([*LORA_TUI, "train", str(root), "--resume", str(tmp_path / "not-a-state")], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no train_state.json" in result.stderr
    result = subprocess.run([*LORA_TUI, "train", str(root), "--model", str(tmp_path / "no-model")], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "base model not found" in result.stderr
    assert not (root / "runs").exists()


def test_train_prints_the_images_it_leaves_out(tmp_path: Path, tiny_model_dir: Path) -> None:
    from lora_tui.core.review import ReviewMarks

    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 1})
    write_images(root / "data" / "a", [(64, 64)], prefix="extra")
    marks = ReviewMarks(root)
    marks.set([root / "data" / "a" / "extra0000.png"], "excluded", True)
    result = subprocess.run([*LORA_TUI, "train", str(root), "--detach"], env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "left out: 1 image(s) marked excluded (extra0000.png)" in result.stderr
    run = _only_run(root)
    staged = run / "staging"
    assert staged.is_dir() and not any(p.name == "extra0000.png" for p in staged.rglob("*"))
    wait_for_end(run, timeout=180)

"""The sd-scripts backend under the supervisor: its real output (replayed at a known pace by the
stand-in, tests/runs/sd_scripts_standin.py) becomes the same events and states as the built-in
trainer's, and the watchdogs act on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lora_tui.runs import reader
from tests.runs.helpers import ENV, events, status, wait_for_end, wait_for_step, wait_until
from tests.runs.standin import install_fake_sd_scripts

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, fixture: str, **opts) -> tuple[Path, dict[str, str]]:
    checkout, path = install_fake_sd_scripts(tmp_path, fixture, **opts)
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    text = (project / "lora-tui.toml").read_text()
    text = text.replace('backend = "builtin"', 'backend = "sd-scripts"')
    text = text.replace('# sd_scripts_dir = "~/sd-scripts"', f'sd_scripts_dir = "{checkout}"')
    (project / "lora-tui.toml").write_text(text)
    (tmp_path / "model.safetensors").write_bytes(b"not read by the stand-in")
    return project, {**ENV, "PATH": path}


def _train(project: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tui", "train", str(project), "--model",
                           str(project.parent / "model.safetensors"), *extra], env=env, capture_output=True,
                          text=True, timeout=120)


def _run(project: Path) -> Path:
    return reader.run_dirs(project)[0]


def test_a_finished_sd_scripts_run_reads_like_a_builtin_one(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_finished_2epochs.log")
    result = _train(project, env)  # attached: follows to the end
    assert result.returncode == 0, result.stdout + result.stderr
    run = _run(project)
    info = wait_for_end(run)
    assert (info.state, info.step, info.total_steps, info.epoch) == ("finished", 6, 6, 2)
    assert info.loss_avg is not None and info.output.endswith("judy.safetensors")
    evs = events(run)
    start = next(e for e in evs if e["kind"] == "start")
    assert start["backend"] == "sd-scripts" and start["total_steps"] == 6 and start["epochs"] == 2
    assert [e["step"] for e in evs if e["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [e["type"] for e in evs if e["kind"] == "save"] == ["lora", "lora"]
    assert any(e["kind"] == "sample" and e["prompts"] for e in evs)
    assert "finished after" in result.stdout and status(run)["state"] == "finished"
    listed = json.loads(subprocess.run([sys.executable, "-m", "lora_tui", "runs", str(project), "--json"], env=env,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert listed[0]["step"] == 6 and listed[0]["loss_avg"] == info.loss_avg and listed[0]["backend"] == "sd-scripts"


def test_a_traceback_fails_the_run_with_the_exception_line(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_bad_network_module_traceback.log")
    assert _train(project, env).returncode == 1
    info = wait_for_end(_run(project))
    assert info.state == "failed" and info.reason.startswith("ModuleNotFoundError: No module named")


def test_exit_code_0_without_a_saved_model_is_a_failure(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_missing_image_dir_exit0.log")
    assert _train(project, env).returncode == 1
    info = wait_for_end(_run(project))
    assert info.state == "failed" and "without saving the model" in info.reason


def test_the_nan_watchdog_stops_sd_scripts_which_would_train_on(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_finished_2epochs.log", step_seconds=0.3, nan_at_step=4)
    assert _train(project, env).returncode != 0
    run = _run(project)
    info = wait_for_end(run)
    assert info.state == "failed" and "nan at step 4" in info.reason and "judy-000001.safetensors" in info.reason
    assert info.step < 6  # stopped, not trained to the end
    assert any(e["kind"] == "error" and e["code"] == "nan" for e in events(run))


def test_cuda_out_of_memory_is_recognised_with_the_knobs_that_help(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_oom_synthetic.log")
    _train(project, env)
    info = wait_for_end(_run(project))
    assert info.state == "failed" and "out of GPU memory" in info.reason and "gradient_checkpointing" in info.reason


def test_stopping_sd_scripts_reaches_the_whole_launch_and_reads_stopped(tmp_path: Path) -> None:
    project, env = _project(tmp_path, "sd_scripts_finished_2epochs.log", step_seconds=1.0)
    assert _train(project, env, "--detach").returncode == 0
    run = _run(project)
    wait_for_step(run, 1)
    stop = subprocess.run([sys.executable, "-m", "lora_tui", "stop", str(run)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    info = wait_for_end(run)
    assert info.state == "stopped" and info.step < 6
    assert "lora-tui stop" in info.reason and ("the last save" in info.reason or "nothing was saved" in info.reason)
    wait_until(lambda: status(run)["state"] == "stopped")

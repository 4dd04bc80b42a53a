"""The trainer as a process: SIGINT stops it gracefully, two processes train as one (DDP on gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_tui.train.network.file import load_lora
from tests.train.trainer_helpers import events, status, tiny_project, train_argv

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _wait_for(path: Path, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and check(path.read_text("utf-8")):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting on {path}")


def test_sigint_finishes_the_step_saves_and_ends_stopped(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 100000})
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "lora_tui.train", *train_argv(root), "--run_dir", str(run)],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(run / "events.jsonl", lambda text: '"kind": "step"' in text)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, out.decode()
    final = status(run)
    assert final["state"] == "stopped" and "SIGINT" in final["reason"]
    last = final["last_step"]
    assert (root / "output" / f"tiny-step{last:08d}.safetensors").exists()
    state = run / "state" / f"tiny-step{last:08d}-state"
    assert json.loads((state / "train_state.json").read_text())["current_step"] == last
    assert events(run)[-1] == {**events(run)[-1], "kind": "end", "state": "stopped", "exit_code": 130}


def test_two_processes_stay_in_sync_and_only_rank_0_writes(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("torch.distributed")
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 3}, batch_size=1)
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
            "-m", "lora_tui.train", *train_argv(root), "--run_dir", str(run)]
    result = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    evs = events(run)
    start = next(e for e in evs if e["kind"] == "start")
    assert start["num_processes"] == 2
    assert start["steps_per_epoch"] == 6  # 12 single-image batches shared by two ranks
    assert [e["step"] for e in evs if e["kind"] == "step"] == [1, 2, 3]  # written once, by rank 0
    sync = next(e for e in evs if e["kind"] == "sync")
    assert sync["ranks"] == 2 and sync["in_sync"]
    assert sorted(p.name for p in (root / "output").iterdir()) == ["tiny.safetensors"]
    weights, meta = load_lora(root / "output" / "tiny.safetensors")
    assert meta["ss_steps"] == "3" and weights
    assert result.stdout.count("finished:") == 1  # the progress lines come from rank 0 only

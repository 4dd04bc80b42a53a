"""A base-model path that cannot be a model is refused before a run folder exists (no torch, no load)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lora_tui.core.model_path import model_problem
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _project(tmp_path: Path, model: str = "model.safetensors") -> Path:
    root = tmp_path / "p"
    write_images(root / "data", [(64, 64)] * 2, captions={0: "dog", 1: "dog"})
    return write_project(root, [{"resolution": 64, "subsets": [{"image_dir": "data"}]}],
                         model={"pretrained_model_name_or_path": model})


def _train(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tui", "train", str(root), "--detach", *extra], env=ENV,
                          capture_output=True, text=True, timeout=60)


def _assert_refused(result: subprocess.CompletedProcess[str], path: Path, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("lora-tui: error: ") and str(path) in lines[0] and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_folder_that_is_not_a_diffusers_model_is_refused_without_a_run_folder(tmp_path: Path) -> None:
    root = _project(tmp_path)
    wrong = tmp_path / "photos"
    wrong.mkdir()
    started = time.monotonic()
    result = _train(root, "--model", str(wrong))
    _assert_refused(result, wrong, "model_index.json", "Diffusers")
    assert time.monotonic() - started < 30  # no model load, no trainer start (the old failure took a run)
    assert not (root / "runs").exists()


def test_a_file_that_is_not_a_checkpoint_is_refused_without_a_run_folder(tmp_path: Path) -> None:
    root = _project(tmp_path)
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a model")
    _assert_refused(_train(root, "--model", str(wrong)), wrong, ".safetensors")
    assert not (root / "runs").exists()


def test_a_wrong_model_in_the_project_file_is_refused_without_a_run_folder(tmp_path: Path) -> None:
    root = _project(tmp_path, model="data")  # a folder of images, not a model
    _assert_refused(_train(root), root / "data", "Diffusers", "pretrained_model_name_or_path")
    assert not (root / "runs").exists()


def test_model_shapes_that_pass_the_cheap_check(tmp_path: Path) -> None:
    diffusers = tmp_path / "d"
    diffusers.mkdir()
    (diffusers / "model_index.json").write_text("{}")
    unet_only = tmp_path / "u"
    (unet_only / "unet").mkdir(parents=True)
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    assert [model_problem(p) for p in (diffusers, unet_only, ckpt)] == [None, None, None]
    empty = tmp_path / "e.safetensors"
    empty.write_bytes(b"")
    assert model_problem(empty) == "model file is empty (0 bytes)"
    assert model_problem(tmp_path / "missing.safetensors") == "base model not found"

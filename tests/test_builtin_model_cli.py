"""`lora-tui:tiny-sd15` from the command line: valid where a model path is, built only when trained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core import builtin_models, project
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LORA_TUI_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lora_tui", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def with_model(tmp_path: Path, model: str) -> Path:
    write_images(tmp_path / "data" / "dog", [(256, 256)] * 4, captions={i: f"sks dog, photo {i}" for i in range(4)})
    return write_project(tmp_path, [{"resolution": 256, "batch_size": 1, "subsets": [
        {"image_dir": "data/dog", "num_repeats": 1}]}], model={"pretrained_model_name_or_path": model},
        training={"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 1})


def test_models_live_in_xdg_cache_home_or_the_home_cache(tmp_path: Path) -> None:
    model = builtin_models.lookup("lora-tui:tiny-sd15")
    assert model.path({"XDG_CACHE_HOME": str(tmp_path)}).parent == tmp_path / "lora-tui" / "models"
    home = Path(os.path.expanduser("~"))
    assert model.path({}).parent == home / ".cache" / "lora-tui" / "models"
    assert model.path({"XDG_CACHE_HOME": "relative"}).parent == home / ".cache" / "lora-tui" / "models"


def test_the_project_maps_the_reference_to_its_cache_folder(tmp_path: Path, fresh_cache: Path) -> None:
    proj = project.load(with_model(tmp_path, "lora-tui:tiny-sd15"))
    assert proj.model_reference == "lora-tui:tiny-sd15" and proj.model_hub_id is None
    assert proj.model_path == fresh_cache / "lora-tui" / "models" / "tiny-sd15-v1"


def test_the_sample_project_passes_check_with_exit_0(sample_copy: Path, fresh_cache: Path) -> None:
    proc = run("check", str(sample_copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("info: " + str(sample_copy / "lora-tui.toml") + ": lora-tui:tiny-sd15 is a tiny random test model: "
            "trains the loop, not a useful LoRA → set [model]") in proc.stdout
    assert "0 errors, 0 warnings" in proc.stdout
    assert not fresh_cache.exists()  # checking a reference never builds the model


def test_steps_never_builds_the_model(sample_copy: Path, fresh_cache: Path) -> None:
    assert run("steps", str(sample_copy)).returncode == 0
    assert not fresh_cache.exists()


def test_an_unknown_builtin_name_is_a_one_line_check_error_listing_the_known_ones(tmp_path: Path) -> None:
    proc = run("check", str(with_model(tmp_path, "lora-tui:tiny-sdxl")))
    assert proc.returncode == 2
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("error:")]
    assert "unknown built-in model 'lora-tui:tiny-sdxl'" in line and "lora-tui:tiny-sd15" in line


@pytest.mark.parametrize("where", ["project", "--model"])
def test_training_an_unknown_builtin_name_is_a_one_line_error_exit_2(tmp_path: Path, where: str) -> None:
    proj = with_model(tmp_path, "lora-tui:tiny-sdxl" if where == "project" else "")
    extra = ["--model", "lora-tui:tiny-sdxl"] if where == "--model" else []
    proc = run("train", str(proj), *extra)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lora-tui: error: "), proc.stderr
    assert "unknown built-in model 'lora-tui:tiny-sdxl'" in lines[0] and "known: lora-tui:tiny-sd15" in lines[0]
    assert not (proj / "runs").exists() or not any((proj / "runs").iterdir())


def test_sd_scripts_backend_is_warned_that_it_cannot_load_the_tiny_model(tmp_path: Path) -> None:
    proj = with_model(tmp_path, "lora-tui:tiny-sd15")
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "train_network.py").write_text("")
    text = (proj / "lora-tui.toml").read_text()
    (proj / "lora-tui.toml").write_text(text.replace("[project]", f'[project]\nbackend = "sd-scripts"\n'
                                                                 f'sd_scripts_dir = "{tmp_path / "sd"}"', 1))
    proc = run("check", str(proj))
    assert "warning:" in proc.stdout and "sd-scripts cannot load lora-tui:tiny-sd15" in proc.stdout

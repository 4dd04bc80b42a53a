"""The whole loop as a user runs it: make-tiny-model, lora-tui train, then diffusers loads the LoRA."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_make_tiny_model_then_train_the_sample_project_and_load_it_in_diffusers(tmp_path: Path) -> None:
    assert main(["make-tiny-model", str(tmp_path / "tiny-model")]) == 0
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    result = subprocess.run([sys.executable, "-m", "lora_tui", "train", str(project), "--model",
                             str(tmp_path / "tiny-model"), "--max-train-steps", "3"],
                            capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = (project / "runs").iterdir()
    assert {p.name for p in run.iterdir()} >= {"run.toml", "dataset.toml", "args.toml", "command.txt",
                                               "status.json", "events.jsonl", "train.log", "output"}
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["last_step"] == status["total_steps"] == 3
    assert "step 3/3" in (run / "train.log").read_text()
    lora = run / "output" / "sample.safetensors"

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "tiny-model", safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # keeps the fused weights, restores plain module names
    changed = [k for k, v in pipe.unet.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert changed  # the trained deltas reached the U-Net


def test_train_refuses_a_project_without_a_model(tmp_path: Path, capsys) -> None:
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    text = (project / "lora-tui.toml").read_text()  # the sample ships lora-tui:tiny-sd15; this one has none
    (project / "lora-tui.toml").write_text(text.replace('"lora-tui:tiny-sd15"', '""', 1))
    assert main(["train", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and "make-tiny-model" in err


def _sample(tmp_path: Path) -> Path:
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    return project


def _stub_model(folder: Path) -> None:
    """A folder that passes the cheap model-path check (a Diffusers layout); nothing loads it."""
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")


def test_train_refuses_zero_or_negative_max_train_steps(tmp_path: Path, capsys) -> None:
    project = _sample(tmp_path)
    for value in ("0", "-3"):  # 0 used to be ignored (a full-length run), -3 crashed the trainer
        with pytest.raises(SystemExit) as exc:
            main(["train", str(project), "--model", str(tmp_path / "m"), "--max-train-steps", value])
        assert exc.value.code == 2
        assert "--max-train-steps: must be at least 1" in capsys.readouterr().err
    assert not (project / "runs").exists()


def test_run_folders_started_in_the_same_second_never_collide(tmp_path: Path, monkeypatch) -> None:
    from lora_tui.core import project as project_mod
    from lora_tui.runs import rundir

    proj = project_mod.load(_sample(tmp_path))
    _stub_model(tmp_path / "m")
    monkeypatch.setattr(rundir, "run_id", lambda name, now=None: "20260101-000000-sample")
    real_build = rundir.configs.build
    other: list[rundir.Run] = []
    started: list[bool] = []

    def racing_build(*args, **kwargs):  # a second `lora-tui train` starts while this one is half-way
        if not started:
            started.append(True)
            other.append(rundir.create_run(proj, model=str(tmp_path / "m")))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(rundir.configs, "build", racing_build)
    first = rundir.create_run(proj, model=str(tmp_path / "m"))
    assert {first.dir.name, other[0].dir.name} == {"20260101-000000-sample", "20260101-000000-sample-2"}
    assert (first.dir / "status.json").exists() and (other[0].dir / "status.json").exists()


def test_an_unusable_runs_folder_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    project = _sample(tmp_path)
    (project / "runs").write_text("not a folder")
    _stub_model(tmp_path / "m")
    assert main(["train", str(project), "--model", str(tmp_path / "m"), "--max-train-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs" in err and "internal error" not in err

"""`lora-tui:tiny-sd15`: built once into the XDG cache on first use, reused after, safe to race."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core import builtin_models
from lora_tui.train.model import builtin, tiny

ROOT = Path(__file__).resolve().parents[2]
REF = "lora-tui:tiny-sd15"


def folder_digest(folder: Path) -> str:
    """One hash over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_first_use_builds_the_model_into_the_xdg_cache(fresh_cache: Path) -> None:
    model = builtin_models.lookup(REF)
    assert not model.is_built()
    said: list[str] = []
    path = Path(builtin.local_model(REF, say=said.append))
    assert path == fresh_cache / "lora-tui" / "models" / "tiny-sd15-v1" and model.is_built()
    assert {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= {
        p.name for p in path.iterdir()}
    assert said and REF in said[0] and "first use" in said[0]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary folder left behind


def test_second_use_reuses_the_model_without_rebuilding(fresh_cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(builtin.local_model(REF))
    before = folder_digest(path), {p: p.stat().st_mtime_ns for p in path.rglob("*")}

    def no_rebuild(*_args: object, **_kwargs: object) -> Path:
        raise AssertionError("the model was built again")

    monkeypatch.setattr(tiny, "make_tiny_model", no_rebuild)
    said: list[str] = []
    assert Path(builtin.local_model(REF, say=said.append)) == path
    assert said == []
    assert (folder_digest(path), {p: p.stat().st_mtime_ns for p in path.rglob("*")}) == before


def test_the_same_name_builds_the_same_bytes_in_another_cache(tmp_path: Path) -> None:
    model = builtin_models.lookup(REF)
    one = builtin.build(model, {"XDG_CACHE_HOME": str(tmp_path / "a")})
    two = builtin.build(model, {"XDG_CACHE_HOME": str(tmp_path / "b")})
    assert one != two and folder_digest(one) == folder_digest(two)


def test_two_processes_resolving_at_once_both_succeed_with_one_model(fresh_cache: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "lora_tui.train.model.builtin", "tiny-sd15"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    model = builtin_models.lookup(REF)
    assert {out.strip() for out, _ in outs} == {str(model.path())}
    assert [p.name for p in model.path().parent.iterdir()] == [model.path().name]
    assert model.is_built()
    reference = builtin.build(model, {"XDG_CACHE_HOME": str(fresh_cache.parent / "reference")})
    assert folder_digest(model.path()) == folder_digest(reference)  # a whole model, not a mix of two


def test_a_folder_without_the_stamp_is_replaced_by_a_complete_build(fresh_cache: Path) -> None:
    model = builtin_models.lookup(REF)
    model.path().mkdir(parents=True)
    (model.path() / "model_index.json").write_text("{}")  # left by hand, or by something else
    builtin.build(model)
    assert model.is_built() and (model.path() / "unet" / "config.json").is_file()
    assert [p.name for p in model.path().parent.iterdir()] == [model.path().name]


def test_train_the_sample_project_finishes_on_the_cpu_with_no_other_setup(sample_copy: Path,
                                                                        tmp_path: Path) -> None:
    """The README's path: nothing built, nothing downloaded, no --model; the run builds the model."""
    cache = tmp_path / "fresh-cache"
    result = subprocess.run([sys.executable, "-m", "lora_tui", "train", str(sample_copy)], capture_output=True,
                            text=True, timeout=600, cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(cache),
                                 "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = (sample_copy / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["last_step"] == status["total_steps"] > 0
    assert (run / "output" / "sample.safetensors").is_file()
    assert 'pretrained_model_name_or_path = "lora-tui:tiny-sd15"' in (run / "args.toml").read_text()
    assert "building lora-tui:tiny-sd15 (first use)" in (run / "train.log").read_text()
    assert builtin_models.lookup(REF).is_built({"XDG_CACHE_HOME": str(cache)})
    assert not (tmp_path / ".cache").exists()  # the user's own cache is never touched


def test_doctor_shows_where_the_builtin_model_lives(sample_copy: Path, fresh_cache: Path, capsys) -> None:
    from lora_tui.cli import main

    main(["doctor", str(sample_copy)])
    out = capsys.readouterr().out
    model = builtin_models.lookup(REF)
    (line,) = [x for x in out.splitlines() if x.split()[1:2] == ["model"]]
    assert line.startswith("info") and str(model.path()) in line and "not built yet" in line
    builtin.build(model)
    main(["doctor", str(sample_copy)])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.split()[1:2] == ["model"]]
    assert "(built)" in lines[0] and lines[1].startswith("ok") and "SD1.x" in lines[1]


def test_model_flag_takes_the_reference_for_both_backends(tmp_path: Path, fresh_cache: Path) -> None:
    from lora_tui.core import project
    from lora_tui.runs.rundir import create_run
    from tests.helpers import write_images, write_project

    write_images(tmp_path / "p" / "data" / "dog", [(64, 64)] * 2, captions={0: "dog", 1: "dog"})
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "train_network.py").write_text("")
    root = write_project(tmp_path / "p", [{"resolution": 64, "batch_size": 1, "subsets": [
        {"image_dir": "data/dog", "num_repeats": 1}]}], model={"pretrained_model_name_or_path": ""})
    proj = project.load(root)
    builtin_run = create_run(proj, backend="builtin", model=REF)
    assert f'pretrained_model_name_or_path = "{REF}"' in builtin_run.args_config.read_text()
    assert not builtin_models.lookup(REF).is_built()  # the built-in trainer builds it in its own process
    proj = project.load(root)
    proj.sd_scripts_dir = tmp_path / "sd"
    sd_run = create_run(proj, backend="sd-scripts", model=REF)
    folder = builtin_models.lookup(REF).path()
    assert f'pretrained_model_name_or_path = "{folder}"' in sd_run.args_config.read_text()
    assert builtin_models.lookup(REF).is_built()  # sd-scripts gets a finished folder

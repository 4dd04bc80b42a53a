"""What a run folder is given: its configs rendered once under their final names, staging without
unreadable images, and the trainer's notes shown to whoever follows the run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

from lora_tui.core import project
from lora_tui.runs import contract, rundir
from tests.helpers import write_images, write_project
from tests.runs.helpers import ENV, fake_run
from tests.runs.helpers import project as run_project

RUN_ID = "20260101-000000-proj"


def _project(root: Path, training: dict | None = None) -> Path:
    write_images(root / "data", [(64, 64)] * 2, captions={0: "dog", 1: "dog"})
    return write_project(root, [{"resolution": 64, "subsets": [{"image_dir": "data"}]}], training={
        "network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 1, **(training or {})})


@pytest.fixture
def fixed_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir, "run_id", lambda name, now=None: RUN_ID)


def test_the_run_args_file_names_the_run_dataset_file_and_says_it_is_frozen(tmp_path: Path) -> None:
    run = rundir.create_run(project.load(_project(tmp_path)))
    text = (run.dir / "args.toml").read_text()
    assert tomllib.loads(text)["dataset"]["dataset_config"] == str(run.dir / "dataset.toml") == str(run.dataset_config)
    for name in ("args.toml", "dataset.toml"):
        header = (run.dir / name).read_text().splitlines()[0]
        assert f"for run {run.dir.name}" in header and "regenerated" not in (run.dir / name).read_text()
    assert not (run.dir / "proj.toml").exists() and not (run.dir / "proj-args.toml").exists()


def test_a_setting_that_happens_to_contain_the_provisional_name_is_left_as_written(tmp_path: Path,
                                                                                 fixed_run_id: None) -> None:
    # the file sits where a first rendering would have put the dataset config (runs/<id>/<name>.toml)
    root = _project(tmp_path, {"sample_prompts": f"runs/{RUN_ID}/proj.toml"})
    run = rundir.create_run(project.load(root))
    args = tomllib.loads((run.dir / "args.toml").read_text())
    assert args["training"]["sample_prompts"] == str(root / "runs" / RUN_ID / "proj.toml")
    assert args["dataset"]["dataset_config"] == str(run.dir / "dataset.toml")


def test_the_run_stages_its_subsets_without_unreadable_images(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "data" / "zero.png").write_bytes(b"")
    run = rundir.create_run(project.load(root))
    image_dir = Path(tomllib.loads(run.dataset_config.read_text())["datasets"][0]["subsets"][0]["image_dir"])
    assert image_dir.parent == run.dir / "staging"
    assert sorted(p.name for p in image_dir.glob("*.png")) == ["img0000.png", "img0001.png"]


def _ended_run(root: Path, steps: int) -> Path:
    run = fake_run(run_project(root))
    contract.append_event(run, "start", total_steps=steps, steps_per_epoch=steps, epochs=1, batch_size=1)
    contract.append_event(run, "warn", message="datasets[0]: 1 images could not be read and are left out")
    for step in range(1, steps + 1):
        contract.append_event(run, "step", step=step, epoch=1, loss=0.1, loss_avg=0.1, lr={"unet": 1e-4})
    contract.append_event(run, "end", state="finished", reason="done", exit_code=0)
    contract.write_status(run, contract.new_status(state="finished", created_at=time.time(), started_at=time.time(),
                                                   ended_at=time.time(), exit_code=0, backend="builtin"))
    return run


@pytest.mark.parametrize("steps", [20, 1200])  # within the tail it reads, and past it
def test_watch_shows_the_trainers_warnings_from_before_the_first_step(tmp_path: Path, steps: int) -> None:
    run = _ended_run(tmp_path / "p", steps)
    result = subprocess.run([sys.executable, "-m", "lora_tui", "watch", str(run)], env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("warning: datasets[0]: 1 images could not be read and are left out") == 1

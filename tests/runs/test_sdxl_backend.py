"""An SDXL project on the sd-scripts backend launches sdxl_train_network.py, with the same run contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lora_tui.runs import reader
from tests.helpers_models import write_header_only_model
from tests.runs.helpers import ENV, wait_for_end
from tests.runs.standin import install_fake_sd_scripts

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    checkout, path = install_fake_sd_scripts(tmp_path, "sd_scripts_finished_2epochs.log")
    # the stand-in replays the same log whichever script accelerate is given
    shutil.copy(checkout / "train_network.py", checkout / "sdxl_train_network.py")
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    text = (project / "lora-tui.toml").read_text()
    text = text.replace('backend = "builtin"', 'backend = "sd-scripts"')
    text = text.replace('# sd_scripts_dir = "~/sd-scripts"', f'sd_scripts_dir = "{checkout}"')
    (project / "lora-tui.toml").write_text(text)
    model = write_header_only_model(tmp_path / "xl.safetensors", "sdxl")
    return project, model, {**ENV, "PATH": path}


def _train(project: Path, model: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tui", "train", str(project), "--model", str(model)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_an_sdxl_run_launches_sdxl_train_network_and_finishes(tmp_path: Path) -> None:
    project, model, env = _project(tmp_path)
    result = _train(project, model, env)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = reader.run_dirs(project)
    command = (run / "command.txt").read_text()
    assert "sdxl_train_network.py --config_file" in command and " train_network.py" not in command
    assert wait_for_end(run).state == "finished"


def test_a_checkout_without_the_sdxl_script_is_refused_before_a_run_exists(tmp_path: Path) -> None:
    project, model, env = _project(tmp_path)
    (project.parent / "sd-scripts" / "sdxl_train_network.py").unlink()
    result = _train(project, model, env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "sdxl_train_network.py" in result.stderr and "git pull" in result.stderr
    assert not reader.run_dirs(project)

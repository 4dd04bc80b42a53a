"""Offline is lora-tui's rule: HF_HUB_OFFLINE=0 in the environment never makes train or doctor use the network.

The commands run as the user runs them (subprocesses: the CLI, its supervisor, the trainer), each with
a ``sitecustomize`` that records and refuses every DNS lookup or connection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core import offline
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[2]
GUARD = '''
import os, socket

def _refuse(*args, **kwargs):
    with open(os.environ["NET_MARKER"], "a") as f:
        f.write(f"{os.getpid()} {args[:2]!r}\\n")
    raise OSError("network refused by the test")

socket.getaddrinfo = _refuse
socket.create_connection = _refuse
'''


@pytest.fixture
def no_tokenizer_project(tmp_path: Path, tiny_single_file: Path) -> Path:
    """A project whose model is a single file with no tokenizer beside it (and an empty HF cache)."""
    model = tmp_path / "models" / "model.safetensors"
    model.parent.mkdir()
    shutil.copy(tiny_single_file, model)
    write_images(tmp_path / "p" / "data", [(64, 64)] * 2)
    return write_project(tmp_path / "p", [{"resolution": 64, "batch_size": 1, "subsets": [
        {"image_dir": "data", "num_repeats": 1, "class_tokens": "dog"}]}],
        model={"pretrained_model_name_or_path": str(model)},
        training={"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_steps": 1})


def _run(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    marker = tmp_path / "network-used.txt"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "PYTHONPATH": f"{guard}{os.pathsep}{ROOT}", "NET_MARKER": str(marker)}
    done = subprocess.run([sys.executable, "-m", "lora_tui", *argv], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    return done, marker


def test_train_with_hf_hub_offline_0_and_no_tokenizer_never_asks_the_hub(tmp_path: Path,
                                                                          no_tokenizer_project: Path) -> None:
    done, marker = _run(tmp_path, "train", str(no_tokenizer_project))
    assert not marker.exists(), marker.read_text()
    assert done.returncode != 0
    (run,) = (no_tokenizer_project / "runs").iterdir()
    assert "no tokenizer found" in (run / "train.log").read_text() + done.stdout + done.stderr


def test_doctor_with_hf_hub_offline_0_and_no_tokenizer_never_asks_the_hub(tmp_path: Path,
                                                                           no_tokenizer_project: Path) -> None:
    done, marker = _run(tmp_path, "doctor", str(no_tokenizer_project))
    assert not marker.exists(), marker.read_text()
    assert done.returncode == 1
    assert any(line.startswith("error tokenizer") and "no tokenizer found" in line for line in done.stdout.splitlines())


def test_the_environment_cannot_turn_the_trainer_online() -> None:
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    assert offline.enforce(env) is False
    assert env == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_only_allow_download_turns_it_online() -> None:
    env: dict[str, str] = {}
    assert offline.enforce(env, allow=True) is True
    assert env == {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", offline.ALLOW_DOWNLOAD_ENV: "1"}
    assert offline.enforce(env) is True  # the trainer process, started with the variable, stays allowed


def test_allow_download_cannot_go_to_the_queue(tmp_path: Path, no_tokenizer_project: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lora_tui.cli import main

    assert main(["train", str(no_tokenizer_project), "--queue", "--allow-download"]) == 2
    assert "--allow-download cannot be used with --queue" in capsys.readouterr().err
    assert not (no_tokenizer_project / "runs").exists()


@pytest.mark.parametrize(("allow", "hub_offline"), [(None, "True"), ("1", "False")])
def test_importing_the_trainer_decides_offline_from_allow_download_alone(tmp_path: Path, allow: str | None,
                                                                         hub_offline: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "0",
           "PYTHONPATH": str(ROOT), **({offline.ALLOW_DOWNLOAD_ENV: allow} if allow else {})}
    code = "import lora_tui.train, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == hub_offline, done.stderr

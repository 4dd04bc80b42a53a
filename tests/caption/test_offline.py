"""Offline and light: hub ids are refused before anything could reach the network; heavy imports wait."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.cli import main
from tests.caption.helpers import colour_project

ROOT = Path(__file__).resolve().parents[2]

NO_NETWORK = """
import json, socket, sys
def refuse(*a, **k):
    raise AssertionError("network call attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from lora_tui.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "onnxruntime", "huggingface_hub"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_a_hub_id_is_refused_without_a_network_call(tmp_path: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    out = subprocess.run([sys.executable, "-c", NO_NETWORK, "caption", str(root), "--model", "Salesforce/blip-base"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    result = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 2, "heavy": []}
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'Salesforce/blip-base' is not a local folder" in lines[0]
    assert "--allow-download" in lines[0]


def test_a_missing_local_folder_names_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    assert main(["caption", str(root), "--model", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: model folder does not exist" in capsys.readouterr().err


def test_a_folder_that_is_no_captioner_says_what_it_lacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    (tmp_path / "empty").mkdir()
    assert main(["caption", str(root), "--model", str(tmp_path / "empty")]) == 2
    assert "no config.json (transformers) and no .onnx with selected_tags.csv" in capsys.readouterr().err


def test_missing_onnxruntime_says_which_extra_to_install(tmp_path: Path, tagger: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    assert main(["caption", str(root), "--model", str(tagger)]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime is not installed" in err and "pip install 'lora-tui[tagger]'" in err
    assert not list((root / "data" / "pics").glob("*.txt"))


def test_python_dash_m_lora_tui_caption_is_the_same_command(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["blue1"])
    out = subprocess.run([sys.executable, "-m", "lora_tui.caption", str(root), "--model", str(tagger)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (root / "data" / "pics" / "blue1.txt").read_text() == "blue theme, long hair, ^_^\n"

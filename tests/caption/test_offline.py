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


def test_a_real_ctrl_c_mid_run_keeps_what_finished_as_one_journaled_edit(tmp_path: Path) -> None:
    import json
    import signal

    from lora_tui.core.journal import Journal
    from tests.caption.tiny_tagger import write_tiny_tagger

    pytest.importorskip("onnxruntime")
    slow = write_tiny_tagger(tmp_path / "big-input", size=1536)  # ~40 ms an image: time to interrupt
    root = colour_project(tmp_path / "p", [f"{c}{i}" for i in range(40) for c in ("red", "green", "blue")])
    proc = subprocess.Popen([sys.executable, "-m", "lora_tui.caption", str(root), "--model", str(slow), "--json",
                             "--batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    events = []
    for line in proc.stdout:  # type: ignore[union-attr]
        events.append(json.loads(line))
        if events[-1]["event"] == "written":
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=60)
    events += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130
    end = events[-1]
    written = sorted((root / "data" / "pics").glob("*.txt"))
    assert end["event"] == "end" and end["interrupted"] and 0 < end["written"] == len(written) < 120
    history = Journal(root).history()
    assert len(history) == 1 and history[0].files == len(written)
    assert main(["captions", str(root), "undo"]) == 0
    assert not list((root / "data" / "pics").glob("*.txt"))

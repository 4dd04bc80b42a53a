"""A run stopped by SIGTERM (kill, systemd, timeout) or SIGHUP (the terminal closed) finishes like Ctrl-C:
what finished is written and is one undo step, not one per group of captions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core.journal import Journal
from tests.caption.helpers import colour_project

ROOT = Path(__file__).resolve().parents[2]


def _stop_after_first_write(root: Path, model: Path, sig: int,
                            preexec=None) -> tuple[subprocess.Popen, list[dict], str]:
    proc = subprocess.Popen([sys.executable, "-m", "lora_tui.caption", str(root), "--model", str(model), "--json",
                             "--batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, preexec_fn=preexec)
    events = []
    for line in proc.stdout:  # type: ignore[union-attr]
        events.append(json.loads(line))
        if events[-1]["event"] == "written":
            proc.send_signal(sig)
            break
    rest, err = proc.communicate(timeout=60)
    return proc, events + [json.loads(line) for line in rest.splitlines()], err


@pytest.fixture(scope="module")
def slow_tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from tests.caption.tiny_tagger import write_tiny_tagger

    return write_tiny_tagger(tmp_path_factory.mktemp("slow") / "big-input", size=1536)  # ~40 ms an image


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminated_run_keeps_what_finished_as_one_journaled_edit(tmp_path: Path, slow_tagger: Path,
                                                                    sig: int) -> None:
    root = colour_project(tmp_path / "p", [f"{c}{i}" for i in range(40) for c in ("red", "green", "blue")])
    proc, events, err = _stop_after_first_write(root, slow_tagger, sig)
    written = sorted((root / "data" / "pics").glob("*.txt"))
    assert proc.returncode == 128 + sig, err  # 143 / 129, as the shell and `lora-tui train` say
    assert f"lora-tui: stopped by {signal.Signals(sig).name}" in err
    assert events[-1]["event"] == "end" and events[-1]["interrupted"]
    assert events[-1]["stopped_by"] == signal.Signals(sig).name
    assert 0 < events[-1]["written"] == len(written) < 120
    history = Journal(root).history()
    assert len(history) == 1 and history[0].files == len(written)


def test_a_run_started_with_hangups_ignored_keeps_going_after_one(tmp_path: Path, slow_tagger: Path) -> None:
    """``nohup lora-tui caption …``: the user asked for the run to outlive the terminal."""
    root = colour_project(tmp_path / "p", [f"{c}{i}" for i in range(4) for c in ("red", "green", "blue")])
    proc, events, err = _stop_after_first_write(root, slow_tagger, signal.SIGHUP,
                                                preexec=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert proc.returncode == 0, err
    assert events[-1]["event"] == "end" and not events[-1]["interrupted"] and events[-1]["written"] == 12

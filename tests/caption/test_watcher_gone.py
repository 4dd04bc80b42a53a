"""The app that reads a run's JSON lines quits (or ``| head`` has seen enough): the run stops like
Ctrl-C, writing every caption that finished as one undo step, rather than dying on the broken pipe
with finished captions unwritten and exit status 0."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from lora_tui.cli import main
from lora_tui.core.journal import Journal
from tests.caption.helpers import colour_project


class GoneAfterFirstWrite(io.StringIO):
    """stdout whose reader leaves once it has seen the first ``written`` event."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = False

    def write(self, text: str) -> int:
        if self.gone:
            raise BrokenPipeError(32, "Broken pipe")
        self.gone = '"event": "written"' in text
        return super().write(text)


def test_a_run_whose_watcher_went_away_writes_what_finished_as_one_step(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.caption.tiny_tagger import write_tiny_tagger

    pytest.importorskip("onnxruntime")
    tagger = write_tiny_tagger(tmp_path / "big-input", size=1536)  # ~40 ms an image: the watcher leaves mid-run
    root = colour_project(tmp_path / "p", [f"{c}{i}" for i in range(40) for c in ("red", "green", "blue")])
    out = GoneAfterFirstWrite()
    monkeypatch.setattr(sys, "stdout", out)
    code = main(["caption", str(root), "--model", str(tagger), "--json", "--batch-size", "1"])
    captioned = [json.loads(line)["image"] for line in out.getvalue().splitlines() if '"event": "caption"' in line]
    written = sorted((root / "data" / "pics").glob("*.txt"))
    assert code == 130
    assert 0 < len(captioned) <= len(written) < 120  # stopped early; nothing the model finished was dropped
    history = Journal(root).history()
    assert len(history) == 1 and history[0].files == len(written)

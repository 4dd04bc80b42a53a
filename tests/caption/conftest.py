"""Shared fixtures: a tiny ONNX tagger, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.caption.tiny_tagger import write_tiny_tagger


@pytest.fixture(scope="session")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return write_tiny_tagger(tmp_path_factory.mktemp("models") / "wd14-tiny")

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


@pytest.fixture(scope="session")
def vlm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random BLIP, GIT and LLaVA-style folders (built once: about a second each)."""
    from tests.caption.tiny_vlm import write_tiny_blip, write_tiny_git, write_tiny_llava

    base = tmp_path_factory.mktemp("vlm")
    return {"blip": write_tiny_blip(base / "blip"), "git": write_tiny_git(base / "git"),
            "llava": write_tiny_llava(base / "llava")}

"""Shared tiny models for the trainer tests (built once per session; a few MB, well under a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: more threads only fight over the machine's shared cores; the caller's count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD1-topology model as a Diffusers folder (seed 0). Treat it as read-only."""
    from lora_tui.train.model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-diffusers") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_single_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model (seed 0) as one original-layout `model.safetensors` with `tokenizer/` beside it."""
    from lora_tui.train.model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-single"), single_file=True, seed=0)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: loading must be offline."""
    import socket

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL-topology model as a Diffusers folder (seed 0). Treat it as read-only."""
    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny SDXL model as one original-layout `.safetensors` with both tokenizers beside it."""
    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl-single") / "xl.safetensors", single_file=True, seed=0)

"""Random LoRAs on the tiny model (SD1 topology) for the LoRA tools' tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train.conftest import tiny_model_dir, tiny_single_file  # noqa: F401 - shared fixtures


def random_lora(model_dir: Path, path: Path, *, dim: int = 8, alpha: float = 4.0, conv_dim: int | None = 4,
                seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """A LoRA with random (non-zero) up and down weights saved in sd-scripts' layout."""
    from lora_tui.train.model.load import load_base_model
    from lora_tui.train.network.lora import LoRANetwork

    base = load_base_model(model_dir)
    net = LoRANetwork(base.text_encoder, base.unet, dim=dim, alpha=alpha, conv_dim=conv_dim, conv_alpha=2.0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for lora in net.loras:
            lora.alpha.fill_(alpha if not (lora.is_conv and lora.lora_down.weight.shape[2:] != (1, 1)) else 2.0)
    net.save_weights(path, metadata or {})
    return path


@pytest.fixture(scope="session")
def lora_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    from lora_tui.train.network.file import build_metadata

    meta = build_metadata({"network_dim": 8, "network_alpha": 4.0, "steps": 120, "epoch": 2, "num_epochs": 2,
                           "sd_model_name": "tiny", "resolution": 64,
                           "dataset_dirs": {"judy": {"n_repeats": 10, "img_count": 12}},
                           "tag_frequency": {"judy": {"judy": 12, "red hair": 9, "smile": 4}},
                           "output_name": "judy", "training_comment": "first try"})
    return random_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "judy.safetensors", metadata=meta)

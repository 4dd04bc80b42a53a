"""SDXL conditioning as sd-scripts computes it: both text encoders, and the size/crop vector.

A building block for the built-in trainer's SDXL path (issue 13), not yet wired into the training
loop. sd-scripts (library/train_util.get_hidden_states_sdxl, sdxl_train_network.call_unet):
- each caption goes through both tokenizers (77 tokens); the U-Net's cross-attention input is the
  penultimate hidden state of CLIP-L (768) and of OpenCLIP bigG (1280), concatenated (2048), with no
  final layer norm;
- the pooled vector is bigG's final-layer-normed EOS state through its text projection (1280);
- the added vector is that pooled vector followed by sinusoidal embeddings (256 each, cos before sin)
  of original size (h, w), crop top-left (top, left) and target size (h, w). Diffusers' SDXL U-Net
  builds those embeddings itself from the six numbers (`time_ids`), with the same frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def encode_sdxl(tokenizers: tuple[Any, Any], text_encoders: tuple[torch.nn.Module, torch.nn.Module],
                captions: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states [B, 77, te1 + te2 width], pooled [B, te2 projection]) for `captions`."""
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for index, (tokenizer, encoder) in enumerate(zip(tokenizers, text_encoders, strict=True)):
        ids = tokenizer(list(captions), padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        if index == 1:
            pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
    assert pooled is not None
    return torch.cat(hidden, dim=-1), pooled


def time_ids(original_hw: Sequence[tuple[int, int]], crop_top_left: Sequence[tuple[int, int]],
             target_hw: Sequence[tuple[int, int]]) -> torch.Tensor:
    """SDXL's six size numbers per image: original (h, w), crop (top, left), target (h, w)."""
    rows = [[*o, *c, *t] for o, c, t in zip(original_hw, crop_top_left, target_hw, strict=True)]
    return torch.tensor(rows, dtype=torch.float32)


def size_embedding(ids: torch.Tensor, dim: int = 256, max_period: int = 10000) -> torch.Tensor:
    """sd-scripts' get_size_embeddings: each of the six numbers as a `dim`-wide sinusoid (cos, then sin)."""
    half = dim // 2
    freqs = torch.exp(-torch.log(torch.tensor(float(max_period))) * torch.arange(half, dtype=torch.float32) / half)
    args = ids.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb.reshape(ids.shape[0], ids.shape[1] * dim)


def added_conditions(pooled: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The `added_cond_kwargs` of diffusers' SDXL U-Net (it embeds `time_ids` as sd-scripts does)."""
    return {"text_embeds": pooled, "time_ids": ids.to(pooled.device, pooled.dtype)}

"""SDXL conditioning as sd-scripts computes it: both text encoders, and the size/crop vector.

The built-in trainer's SDXL path (issue 13). sd-scripts (library/strategy_sdxl.py,
sdxl_train_network.call_unet):
- each caption goes through both tokenizers (77 tokens, or `max_token_length` 150/225 split into
  75-token chunks, each with its own BOS/EOS, stitched back as for SD1); the U-Net's cross-attention
  input is the penultimate hidden state of CLIP-L (768) and of OpenCLIP bigG (1280), concatenated
  (2048), with no final layer norm;
- the pooled vector is bigG's final-layer-normed state at the first EOS token through its text
  projection (1280) — sd-scripts' `_pool_workaround`, not CLIP's "highest token id" pooling; with
  chunks, the first chunk's;
- the added vector is that pooled vector followed by sinusoidal embeddings (256 each, cos before sin)
  of original size (h, w), crop top-left (top, left) and target size (h, w). Diffusers' SDXL U-Net
  builds those embeddings itself from the six numbers (`time_ids`), with the same frequencies.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

CHUNK = 75
# (hidden state of CLIP-L [B, T, 768], of bigG [B, T, 1280], bigG's pooled projection [B, 1280]):
# what sd-scripts caches per caption (`hidden_state1`, `hidden_state2`, `pool2`)
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def chunk_ids(tokenizer: Any, ids: torch.Tensor, chunks: int) -> torch.Tensor:
    """(B, chunks*75 + 2) token ids as (B, chunks, 77): BOS + 75 tokens + EOS per chunk.

    A tokenizer that pads with something other than EOS (SDXL's second, SD2's) gets sd-scripts'
    fixes: a chunk ending in a real token ends in EOS, and a chunk that starts with padding starts
    with EOS (strategy_base._get_input_ids)."""
    length = tokenizer.model_max_length
    if chunks == 1:
        return ids.reshape(ids.shape[0], 1, -1)
    out = []
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for i in range(1, ids.shape[1] - length + 2, length - 2):
        chunk = torch.cat([ids[:, :1], ids[:, i:i + length - 2], ids[:, -1:]], dim=1)
        if pad != eos:
            ends_in_token = (chunk[:, -2] != eos) & (chunk[:, -2] != pad)
            chunk[ends_in_token, -1] = eos
            chunk[chunk[:, 1] == pad, 1] = eos
        out.append(chunk)
    return torch.stack(out, dim=1)


def _stitch(hidden: torch.Tensor, batch: int, chunks: int) -> torch.Tensor:
    """(B*n, 77, C) chunk states back to (B, n*75 + 2, C): one BOS, the chunk bodies, the last end."""
    hidden = hidden.reshape(batch, -1, hidden.shape[-1])
    if chunks == 1:
        return hidden
    length = hidden.shape[1] // chunks
    parts = [hidden[:, :1]] + [hidden[:, i:i + length - 2] for i in range(1, hidden.shape[1], length)]
    return torch.cat([*parts, hidden[:, -1:]], dim=1)


class SdxlTextEncoding:
    """Captions to SDXL's three text outputs; memoised by caption text while both encoders are frozen."""

    def __init__(self, tokenizers: tuple[Any, Any], text_encoders: Sequence[torch.nn.Module], *,
                 max_token_length: int | None = None, cache_size: int = 0) -> None:
        self.tokenizers = tokenizers
        self.text_encoders = text_encoders
        self.chunks = max(1, (max_token_length or CHUNK) // CHUNK)
        self.cache_size = cache_size
        self.cache: OrderedDict[str, Outputs] = OrderedDict()

    def tokens(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, chunks, 77) for each tokenizer."""
        out = []
        for tokenizer in self.tokenizers:
            length = self.chunks * CHUNK + 2 if self.chunks > 1 else tokenizer.model_max_length
            ids = tokenizer(list(captions), padding="max_length", truncation=True, max_length=length,
                            return_tensors="pt").input_ids
            out.append(chunk_ids(tokenizer, ids, self.chunks))
        return out[0], out[1]

    def encode_ids(self, ids1: torch.Tensor, ids2: torch.Tensor) -> Outputs:
        """sd-scripts' `_get_hidden_states_sdxl` for ids from :meth:`tokens`."""
        te1, te2 = self.text_encoders
        batch = ids1.shape[0]
        flat1, flat2 = ids1.reshape(-1, ids1.shape[-1]), ids2.reshape(-1, ids2.shape[-1])
        hidden1 = te1(flat1, output_hidden_states=True).hidden_states[-2]
        out2 = te2(flat2, output_hidden_states=True)
        hidden2 = out2.hidden_states[-2]
        eos = torch.argmax((flat2 == self.tokenizers[1].eos_token_id).int(), dim=1).to(hidden2.device)
        last = out2.last_hidden_state[torch.arange(flat2.shape[0], device=hidden2.device), eos]
        projection = te2.text_projection
        pool2 = projection(last.to(projection.weight.dtype)).to(last.dtype)
        return _stitch(hidden1, batch, self.chunks), _stitch(hidden2, batch, self.chunks), pool2[::self.chunks]

    def outputs(self, captions: Sequence[str], device: torch.device | str, *, frozen: bool) -> Outputs:
        """The three outputs for `captions`, through the memo when frozen."""
        if not frozen or not self.cache_size:
            ids1, ids2 = self.tokens(captions)
            return self.encode_ids(ids1.to(device), ids2.to(device))
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            ids1, ids2 = self.tokens(missing)
            with torch.no_grad():
                encoded = self.encode_ids(ids1.to(device), ids2.to(device))
            for i, caption in enumerate(missing):
                self.cache[caption] = (encoded[0][i], encoded[1][i], encoded[2][i])
                if len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        rows = []
        for caption in captions:
            self.cache.move_to_end(caption)
            rows.append(self.cache[caption])
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows])

    def __call__(self, captions: Sequence[str], device: torch.device | str, *,
                 frozen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-attention states [B, T, te1 + te2 width], pooled [B, te2 projection])."""
        hidden1, hidden2, pool2 = self.outputs(captions, device, frozen=frozen)
        return torch.cat([hidden1, hidden2], dim=-1), pool2


def encode_sdxl(tokenizers: tuple[Any, Any], text_encoders: tuple[torch.nn.Module, torch.nn.Module],
                captions: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states [B, 77, te1 + te2 width], pooled [B, te2 projection]) for `captions`."""
    return SdxlTextEncoding(tokenizers, text_encoders)(captions, device, frozen=False)


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

"""Captions to U-Net conditioning, as sd-scripts computes it.

``max_token_length`` 150/225 splits the tokens into 75-token chunks, each encoded with its own
BOS/EOS and stitched back (one BOS state, the chunk bodies, one EOS state); ``clip_skip`` n takes the
n-th hidden state from the end and applies the final layer norm. When the text encoder is frozen the
result depends on the caption text alone, so it is memoised: with static captions every step after
the first epoch skips the text encoder entirely.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

CHUNK = 75


class TextEncoding:
    """Encodes batches of captions; ``cache`` is used only while the text encoder is frozen."""

    def __init__(self, tokenizer: Any, text_encoder: torch.nn.Module, *, max_token_length: int | None = None,
                 clip_skip: int | None = None, cache_size: int = 0) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.chunks = max(1, (max_token_length or CHUNK) // CHUNK)
        self.clip_skip = clip_skip if clip_skip and clip_skip > 1 else None
        self.cache_size = cache_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def tokens(self, captions: list[str]) -> torch.Tensor:
        """Token ids (B, chunks*75 + 2), padded like the tokenizer pads to its max length."""
        length = self.chunks * CHUNK + 2
        out = self.tokenizer(captions, padding="max_length", truncation=True, max_length=length,
                             return_tensors="pt")
        return out.input_ids

    def _hidden(self, ids: torch.Tensor) -> torch.Tensor:
        result = self.text_encoder(ids, output_hidden_states=self.clip_skip is not None)
        if self.clip_skip is None:
            return result.last_hidden_state
        hidden = result.hidden_states[-self.clip_skip]
        model = getattr(self.text_encoder, "text_model", self.text_encoder)
        return model.final_layer_norm(hidden)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, chunks*75 + 2, C) for token ids from :meth:`tokens`."""
        if self.chunks == 1:
            return self._hidden(ids)
        bos, eos = ids[:, :1], ids[:, -1:]
        states = []
        for i in range(self.chunks):
            body = ids[:, 1 + i * CHUNK: 1 + (i + 1) * CHUNK]
            chunk = torch.cat([bos, body, eos], dim=1)
            hidden = self._hidden(chunk)
            if i == 0:
                states.append(hidden[:, :1])  # BOS
            states.append(hidden[:, 1:-1])
            if i == self.chunks - 1:
                states.append(hidden[:, -1:])  # EOS
        return torch.cat(states, dim=1)

    def __call__(self, captions: list[str], device: torch.device, *, frozen: bool) -> torch.Tensor:
        if not frozen or not self.cache_size:
            return self.encode_ids(self.tokens(captions).to(device))
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            with torch.no_grad():
                encoded = self.encode_ids(self.tokens(missing).to(device))
            for caption, states in zip(missing, encoded):
                fresh[caption] = self.cache[caption] = states.detach()
                if len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        for caption in captions:
            if caption in self.cache:
                self.cache.move_to_end(caption)
        return torch.stack([fresh[c] if c in fresh else self.cache[c] for c in captions])

"""SDXL caption encoding with sd-scripts' max_token_length chunking (library/strategy_base, strategy_sdxl)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_tui.train.model.sdxl_load import load_sdxl_model
from lora_tui.train.model.sdxl_text import SdxlTextEncoding, chunk_ids

pytestmark = pytest.mark.usefixtures("no_network")


def test_a_short_caption_in_150_tokens_starts_like_its_77_token_encoding(tiny_sdxl_dir: Path) -> None:
    model = load_sdxl_model(tiny_sdxl_dir)
    short, long_ = SdxlTextEncoding(model.tokenizers, model.text_encoders), \
        SdxlTextEncoding(model.tokenizers, model.text_encoders, max_token_length=150)
    captions = ["sks dog, red", "mira woman, [arms up], " * 3]
    with torch.no_grad():
        h1, h2, pool = short.outputs(captions, "cpu", frozen=False)
        l1, l2, lpool = long_.outputs(captions, "cpu", frozen=False)
    assert l1.shape == (2, 152, 16) and l2.shape == (2, 152, 32) and lpool.shape == (2, 32)
    # chunk 1 of a caption under 75 tokens is its 77-token input; pooled comes from the first chunk
    assert torch.allclose(l1[:, :76], h1[:, :76], atol=1e-6) and torch.allclose(l2[:, :76], h2[:, :76], atol=1e-6)
    assert torch.allclose(lpool, pool, atol=1e-6)


def test_chunks_of_a_pad_zero_tokenizer_get_sd_scripts_eos_fixes(tiny_sdxl_dir: Path) -> None:
    tokenizer = load_sdxl_model(tiny_sdxl_dir).tokenizers[1]  # pads with 0, as OpenCLIP
    eos = tokenizer.eos_token_id
    body = list(range(10, 160))  # 150 real tokens: fills both chunks
    ids = torch.tensor([[tokenizer.bos_token_id, *body, eos]])
    chunks = chunk_ids(tokenizer, ids, 2)
    assert chunks.shape == (1, 2, 77)
    assert chunks[0, 0, -1] == eos and chunks[0, 0, 1:76].tolist() == body[:75]  # ends in a token → EOS
    empty_second = torch.tensor([[tokenizer.bos_token_id, *body[:5], eos] + [0] * 145])
    second = chunk_ids(tokenizer, empty_second, 2)[0, 1]
    assert second[1] == eos and second[2] == 0  # <BOS> <PAD> … becomes <BOS> <EOS> <PAD> …


def test_frozen_encoders_memoise_by_caption_and_give_the_same_outputs(tiny_sdxl_dir: Path) -> None:
    model = load_sdxl_model(tiny_sdxl_dir)
    text = SdxlTextEncoding(model.tokenizers, model.text_encoders, cache_size=8)
    fresh = SdxlTextEncoding(model.tokenizers, model.text_encoders)
    with torch.no_grad():
        first = text.outputs(["a", "b", "a"], "cpu", frozen=True)
        again = text.outputs(["b", "a"], "cpu", frozen=True)
        plain = fresh.outputs(["b", "a"], "cpu", frozen=False)
    assert list(text.cache) == ["b", "a"] and torch.equal(first[0][0], first[0][2])
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(again, plain, strict=True))

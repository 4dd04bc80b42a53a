"""Our CLIP token counter agrees with transformers' CLIPTokenizer on the same vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core.clip_tokens import ClipTokenizer, estimate_tokens, find_tokenizer
from tests.helpers_clip import write_tiny_clip_tokenizer

CAPTIONS = [
    "sks dog, the dog", "1girl, smile, the girl's dog", "smile   smile\tsmile", "(smile:1.2), [dog]",
    "a photo of sks dog on the grass, 4k, highly detailed", "Dog, SMILE, The", "x,y;z..!!", "",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip_tokenizer(tmp_path_factory.mktemp("clip") / "tokenizer")


@pytest.mark.parametrize("text", CAPTIONS)
def test_counts_match_transformers(tokenizer_dir: Path, text: str) -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"))
    expected = len(reference(text)["input_ids"]) - 2  # without start/end markers
    assert ClipTokenizer.from_folder(tokenizer_dir).count(text) == expected


def test_merges_shorten_known_words(tokenizer_dir: Path) -> None:
    tok = ClipTokenizer.from_folder(tokenizer_dir)
    assert tok.count("the dog") == 2 and tok.count("cat") == 3


def test_found_in_a_diffusers_model_folder(tokenizer_dir: Path) -> None:
    found = find_tokenizer(tokenizer_dir.parent)
    assert found is not None and found.source == tokenizer_dir


def test_found_beside_a_single_file_model(tokenizer_dir: Path) -> None:
    """`make-tiny-model --single-file` and the usual download keep tokenizer/ next to the .safetensors."""
    model = tokenizer_dir.parent / "model.safetensors"
    model.write_bytes(b"")
    found = find_tokenizer(model)
    assert found is not None and found.source == tokenizer_dir


def test_estimate_is_positive_for_text() -> None:
    assert estimate_tokens("a photo of a dog, smiling") >= 6
    assert estimate_tokens("") == 0

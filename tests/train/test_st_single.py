"""LoRA .safetensors written in one pass: the same bytes safetensors writes, the same sd-scripts hashes."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch

from lora_tui.train.network import st_single
from lora_tui.train.network.file import safetensors_hashes, save_lora


def mixed_tensors() -> dict[str, torch.Tensor]:
    """Several dtypes (safetensors orders by dtype, then name), a scalar, an empty tensor, a slice."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 10, generator=g)
    return {
        "lora_unet_b.lora_down.weight": torch.randn(4, 9, generator=g),
        "lora_unet_a.lora_up.weight": torch.randn(9, 4, generator=g).half(),
        "lora_unet_a.alpha": torch.tensor(2.0, dtype=torch.bfloat16),
        "lora_te_z.lora_down.weight": torch.randn(3, 3, 3, 3, generator=g).double(),
        "lora_unet_é.lora_up.weight": base[2:5],  # contiguous, at an offset in its storage
        "empty": torch.zeros(0, 4),
        "count": torch.arange(5, dtype=torch.int64),
    }


def one_pass_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    lay = st_single.layout(tensors)
    return st_single.header(lay, metadata) + b"".join(bytes(b) for b in lay.buffers)


def split(blob: bytes) -> tuple[dict, bytes, int]:
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + size]), blob[8 + size:], size


def test_file_is_byte_identical_to_safetensors_save_with_one_metadata_key() -> None:
    tensors = mixed_tensors()
    for meta in ({}, {"ss_comment": 'tags [a], "b" \\ é ☃ \x00\x01\x08\x0c\n\r\t\x1f\x7f\u2028'}):
        assert one_pass_file(tensors, meta) == safetensors.torch.save(tensors, meta)


def test_file_matches_safetensors_save_up_to_the_order_of_metadata_keys() -> None:
    tensors = mixed_tensors()
    meta = {f"ss_key{i}": f"value {i} [x]" for i in range(30)} | {"modelspec.title": "t"}
    ours, theirs = one_pass_file(tensors, meta), safetensors.torch.save(tensors, meta)
    ours_header, ours_data, ours_size = split(ours)
    their_header, their_data, their_size = split(theirs)
    assert ours_size == their_size and ours_data == their_data
    assert ours_header == their_header
    assert list(ours_header) == list(their_header)  # __metadata__ first, tensors in data order
    assert len(ours) == len(theirs)


def test_hashes_agree_with_sd_scripts_definition_for_large_and_small_files() -> None:
    g = torch.Generator().manual_seed(0)
    big = {"a.lora_down.weight": torch.randn(4, 70_000, generator=g), "a.alpha": torch.tensor(1.0),
           "a.lora_up.weight": torch.randn(70_000, 4, generator=g).half()}
    small = {"a.lora_down.weight": torch.randn(4, 8, generator=g), "a.alpha": torch.tensor(1.0)}
    meta = {"ss_network_dim": "4", "modelspec.title": "not hashed"}
    for tensors in (big, small):
        assert st_single.hashes(st_single.layout(tensors), meta) == safetensors_hashes(tensors, meta)


def test_legacy_hash_window_inside_or_across_a_huge_header_agrees() -> None:
    """ss_tag_frequency can push the header past 1 MiB: the 64 KiB window is then header bytes.

    One ss_* key only: with several, safetensors' own key order (and so sd-scripts' legacy hash of
    such a file) changes from call to call; ours follows the metadata's order."""
    g = torch.Generator().manual_seed(2)
    tensors = {"a.lora_down.weight": torch.randn(4, 70_000, generator=g)}
    for pad in (0x100000 + 5, 0x100000 - 0x8000):  # window inside the header; straddling header and data
        meta = {"ss_tag_frequency": "x" * pad, "modelspec.title": "not hashed"}
        assert st_single.hashes(st_single.layout(tensors), meta) == safetensors_hashes(tensors, meta)


def test_save_lora_writes_what_safetensors_would_with_the_hashes_in_the_header(tmp_path: Path) -> None:
    tensors = mixed_tensors()
    written = save_lora(tmp_path / "x.safetensors", tensors, {"ss_network_dim": "4"})
    model_hash, legacy_hash = safetensors_hashes(tensors, {"ss_network_dim": "4"})
    assert (written["sshs_model_hash"], written["sshs_legacy_hash"]) == (model_hash, legacy_hash)
    raw = (tmp_path / "x.safetensors").read_bytes()
    header, data, _ = split(raw)
    their_header, their_data, _ = split(safetensors.torch.save(tensors, written))
    assert header == their_header and data == their_data
    loaded = safetensors.torch.load(raw)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())

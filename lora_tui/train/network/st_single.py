"""A `.safetensors` file written straight from tensor memory, with sd-scripts' hashes, serialised once.

sd-scripts' `sshs_model_hash` / `sshs_legacy_hash` are taken over the file that
`safetensors.torch.save(tensors, ss_only_metadata)` would make; the file written then carries more
metadata (the hashes themselves, modelspec, …). Doing that literally serialises every tensor twice
and builds two whole-file byte strings (for a 300 MB LoRA most of `lora resize`'s I/O time).

Both files have the same data section (the tensors' bytes, in safetensors' order) and differ only in
the header. So the tensors are laid out once, here: the data is hashed from the tensors' own memory,
the ss-only header is built only to know where the legacy hash's 64 KiB window falls, and the file is
the final header followed by the same tensor buffers, written without copying them into one string.
The header is what safetensors itself writes (compact JSON, `__metadata__` first, entries in data
order, space-padded to 8 bytes; the tensor order is asked of safetensors on empty stand-ins), so the
file is byte-for-byte `safetensors.torch.save(tensors, metadata)` up to the order of the metadata
keys, which safetensors itself does not keep stable (a Rust HashMap). tests/train/test_st_single.py
holds it to that.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import safetensors.torch
import torch

# sd-webui-additional-networks' legacy hash: SHA-256 of 64 KiB read at 1 MiB into the file.
LEGACY_OFFSET = 0x100000
LEGACY_LENGTH = 0x10000


@dataclass
class Layout:
    """The tensors in safetensors' data order: header entries and the raw little-endian bytes."""

    entries: dict[str, dict[str, object]]
    buffers: list[memoryview]


def supported() -> bool:
    """safetensors stores little-endian; on a big-endian host its own writer swaps bytes, so use it."""
    return sys.byteorder == "little"


def _raw(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes without a copy (it is contiguous and on the CPU); bf16 has no numpy dtype,
    hence the uint8 view."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def layout(tensors: Mapping[str, torch.Tensor]) -> Layout:
    """Order and offsets as safetensors would give them. The order (by dtype, then name) comes from
    safetensors itself, serialising empty tensors of the same dtypes: nothing to copy, no rule of
    ours to drift from theirs."""
    stand_ins = {name: torch.empty(0, dtype=t.dtype) for name, t in tensors.items()}
    blob = safetensors.torch.save(stand_ins)
    size = int.from_bytes(blob[:8], "little")
    order = json.loads(blob[8:8 + size])
    entries: dict[str, dict[str, object]] = {}
    buffers = []
    offset = 0
    for name, info in order.items():
        if name == "__metadata__":
            continue
        tensor = tensors[name]
        raw = _raw(tensor)
        entries[name] = {"dtype": info["dtype"], "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + raw.nbytes]}
        buffers.append(raw)
        offset += raw.nbytes
    return Layout(entries, buffers)


def header(lay: Layout, metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length and the JSON header safetensors writes for these tensors and metadata."""
    text = json.dumps({"__metadata__": dict(metadata), **lay.entries}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def _window(parts: list[memoryview | bytes], start: int, length: int) -> Iterator[memoryview | bytes]:
    """Bytes [start, start + length) of the concatenation of ``parts`` (shorter at the end)."""
    end = start + length
    pos = 0
    for part in parts:
        view = memoryview(part)
        size = view.nbytes
        if pos + size > start and pos < end:
            yield view[max(0, start - pos):min(size, end - pos)]
        pos += size
        if pos >= end:
            return


def hashes(lay: Layout, metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as sd-scripts' precalculate_safetensors_hashes: over the
    file with only the ``ss_*`` metadata (so editing other keys keeps them). The model hash is the
    SHA-256 of the data section; the legacy one of bytes [1 MiB, 1 MiB + 64 KiB) of that file.

    When the ss-only header alone passes 1 MiB (a huge ss_tag_frequency) that window is header text,
    whose key order safetensors does not keep stable, so sd-scripts' own legacy hash of such a file
    varies between calls; here it follows the metadata's order."""
    model = hashlib.sha256()
    for raw in lay.buffers:
        model.update(raw)
    ss_header = header(lay, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    legacy = hashlib.sha256()
    for piece in _window([ss_header, *lay.buffers], LEGACY_OFFSET, LEGACY_LENGTH):
        legacy.update(piece)
    return model.hexdigest(), legacy.hexdigest()[:8]


def write(f: BinaryIO, lay: Layout, metadata: Mapping[str, str]) -> None:
    """The header, then each tensor's bytes straight from its memory."""
    f.write(header(lay, metadata))
    for raw in lay.buffers:
        f.write(raw)

"""SDXL text-encoder output caching (`cache_text_encoder_outputs`, `..._to_disk`), as sd-scripts does it.

With the text encoders frozen and every caption static, each image's three text outputs (CLIP-L's and
bigG's penultimate hidden states, bigG's pooled projection) are computed once before training; the
encoders can then leave the GPU. sd-scripts (library/strategy_sdxl.py) encodes each image's stored
caption (no prefix/suffix processing: its `info.caption`) and keeps the outputs in memory, or in
`<image stem>_te_outputs.npz` beside the image with the keys `hidden_state1`, `hidden_state2` and
`pool2` (float32, no batch axis). Our files are interchangeable with sd-scripts': we add one key,
`caption`, so a file whose caption was edited since is encoded again (sd-scripts would train on the
stale outputs); a file without it (written by sd-scripts) is trusted as sd-scripts trusts it.

The options that make a caption change between steps are refused with sd-scripts' assertion, worded
as `lora-tui check` words it (core.family_checks): one source for both.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lora_tui.core.errors import TrainError

SUFFIX = "_te_outputs.npz"
KEYS = ("hidden_state1", "hidden_state2", "pool2")
DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def npz_path(image: Path) -> Path:
    """sd-scripts' `get_outputs_npz_path`: the image path with its extension replaced."""
    return Path(os.path.splitext(str(image))[0] + SUFFIX)


def read(path: Path, caption: str | None = None) -> Outputs | None:
    """The outputs in `path`, or None when it is missing, damaged, lacks a key or (when it records
    one) was made from another caption."""
    try:
        with np.load(path) as npz:
            if any(k not in npz.files for k in KEYS):
                return None
            if caption is not None and "caption" in npz.files and str(npz["caption"]) != caption:
                return None
            return tuple(torch.from_numpy(np.array(npz[k], dtype=np.float32)) for k in KEYS)  # type: ignore[return-value]
    except DAMAGED:
        return None


def write(path: Path, outputs: Outputs, caption: str) -> None:
    """One file, atomically (a kill mid-write leaves the old file or none)."""
    arrays = {k: t.detach().float().cpu().numpy() for k, t in zip(KEYS, outputs, strict=True)}
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, caption=np.array(caption), **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write text-encoder output cache: {exc.strerror or exc}", path=path,
                         hint="make the image folder writable, or set cache_text_encoder_outputs_to_disk = "
                              "false") from None


@dataclass
class TeCacheStats:
    encoded: int = 0
    reused: int = 0


def cache_outputs(entries: Sequence[Any], encode: Callable[[list[str]], Outputs], *, to_disk: bool,
                  batch_size: int = 1, progress: Callable[[int, int], None] | None = None) -> TeCacheStats:
    """Fill each entry's `te_outputs` (memory) or `te_npz` (disk) from `encode(captions)`.

    Entries sharing an image (the same file in two subsets) share its file, as in sd-scripts.
    """
    stats = TeCacheStats()
    pending: list[Any] = []
    done = 0

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        with torch.no_grad():
            hidden1, hidden2, pool2 = encode([e.caption for e in pending])
        for i, entry in enumerate(pending):
            outputs = (hidden1[i].detach().float().cpu(), hidden2[i].detach().float().cpu(),
                       pool2[i].detach().float().cpu())
            if torch.isnan(outputs[0]).any() or torch.isnan(outputs[1]).any():
                raise TrainError("NaN in the text-encoder outputs", path=entry.path,
                                 hint="use bf16 or no mixed precision for the text encoders")
            if to_disk:
                entry.te_npz = npz_path(entry.path)
                write(entry.te_npz, outputs, entry.caption)
            else:
                entry.te_outputs = outputs
            stats.encoded += 1
            done += 1
            if progress:
                progress(done, len(entries))
        pending.clear()

    for entry in entries:
        if to_disk and read(npz_path(entry.path), entry.caption) is not None:
            entry.te_npz = npz_path(entry.path)
            stats.reused += 1
            done += 1
            if progress:
                progress(done, len(entries))
            continue
        pending.append(entry)
        if len(pending) >= max(1, batch_size):
            flush()
    flush()
    return stats


def batch_outputs(entries: Sequence[Any]) -> Outputs | None:
    """The batch's cached outputs stacked (B, ...), or None when the batch has none cached."""
    rows: list[Outputs] = []
    for entry in entries:
        outputs = entry.te_outputs
        if outputs is None and entry.te_npz is not None:
            outputs = read(entry.te_npz)
            if outputs is None:
                raise TrainError("cannot read the text-encoder output cache", path=entry.te_npz,
                                 hint="delete the file; it is rebuilt on the next run")
        if outputs is None:
            return None
        rows.append(outputs)
    return (torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
            torch.stack([r[2] for r in rows]))

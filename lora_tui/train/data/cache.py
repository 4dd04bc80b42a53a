"""Latent cache files next to the images, in sd-scripts' format (``--cache_latents_to_disk``).

sd-scripts (SD1/2 strategy) writes ``<image stem>_<WWWW>x<HHHH>_sd.npz`` (the image's own size,
zero-padded) beside each image — or reuses a legacy ``<image stem>.npz`` if one exists — holding
``latents`` (C, h, w), ``original_size`` [w, h], ``crop_ltrb`` [l, t, r, b] and, with ``flip_aug``,
``latents_flipped``. The files are interchangeable with sd-scripts' own. sd-scripts trusts any file
with the right keys; we also refuse one older than its image or whose latents do not fit the
bucket, so an edited image is re-encoded.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from lora_tui.core.errors import TrainError

SUFFIX = "_sd.npz"
LEGACY_SUFFIX = ".npz"


def npz_path(image: Path, image_size: tuple[int, int]) -> Path:
    """Where sd-scripts keeps (or looks for) this image's latents."""
    stem = os.path.splitext(str(image))[0]
    legacy = Path(stem + LEGACY_SUFFIX)
    if legacy.exists():
        return legacy
    return Path(f"{stem}_{image_size[0]:04d}x{image_size[1]:04d}{SUFFIX}")


# what numpy raises on a damaged .npz: a truncated zip (a kill mid-write by another tool, a full disk),
# a member cut short, garbage bytes
DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def is_valid(path: Path, image: Path, *, bucket: tuple[int, int], flip_aug: bool,
             latent_stride: int | None = None) -> bool:
    """True when ``path`` can be used instead of encoding ``image`` again."""
    return check(path, image, bucket=bucket, flip_aug=flip_aug, latent_stride=latent_stride) == "ok"


def check(path: Path, image: Path, *, bucket: tuple[int, int], flip_aug: bool,
          latent_stride: int | None = None) -> str:
    """``ok`` (usable), ``stale`` (missing, older than its image, other keys or size) or ``damaged``
    (unreadable: re-encoded, and the run says so, since something cut the file short)."""
    try:
        if path.stat().st_mtime < image.stat().st_mtime:
            return "stale"
    except OSError:
        return "stale"
    try:
        with np.load(path) as npz:
            keys = set(npz.files)
            if "latents" not in keys or (flip_aug and "latents_flipped" not in keys):
                return "stale"
            latents = npz["latents"]
            if latent_stride:
                expected = (bucket[1] // latent_stride, bucket[0] // latent_stride)
                if tuple(latents.shape[-2:]) != expected:
                    return "stale"
            if flip_aug:
                _ = npz["latents_flipped"]  # reading it proves the member is whole
    except DAMAGED:
        return "damaged"
    return "ok"


def save(path: Path, latents: torch.Tensor, original_size: tuple[int, int],
         crop: tuple[int, int, int, int], flipped: torch.Tensor | None = None) -> None:
    """Write one cache file (keys as sd-scripts writes them); other keys already there are kept."""
    arrays: dict[str, np.ndarray] = {}
    try:
        if path.exists():
            with np.load(path) as old:
                arrays = {k: old[k] for k in old.files}
    except DAMAGED:
        arrays = {}
    arrays["latents"] = latents.detach().float().cpu().numpy()
    arrays["original_size"] = np.array(original_size)
    arrays["crop_ltrb"] = np.array(crop)
    if flipped is not None:
        arrays["latents_flipped"] = flipped.detach().float().cpu().numpy()
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write latent cache: {exc.strerror or exc}", path=path,
                         hint="make the image folder writable, or cache latents in memory") from None


def load(path: Path, flipped: bool) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int, int, int]]:
    """(latents, original_size, crop_ltrb) from a cache file; the flipped latents when ``flipped``."""
    try:
        with np.load(path) as npz:
            key = "latents_flipped" if flipped else "latents"
            latents = torch.from_numpy(np.array(npz[key], dtype=np.float32))
            size = tuple(int(v) for v in npz["original_size"]) if "original_size" in npz.files else (0, 0)
            crop = tuple(int(v) for v in npz["crop_ltrb"]) if "crop_ltrb" in npz.files else (0, 0, 0, 0)
    except DAMAGED as exc:
        raise TrainError(f"cannot read latent cache: {exc}", path=path,
                         hint="delete the file; it is rebuilt on the next run") from None
    return latents, (size[0], size[1]), (crop[0], crop[1], crop[2], crop[3])

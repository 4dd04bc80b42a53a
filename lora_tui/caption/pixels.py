"""A sentence captioner's image half done with Pillow and numpy alone, used only once proven equal.

Why: transformers' processor spends most of its ~3 ms an image in Python (argument validation,
format inference, a conversion per step), holding the GIL, while a small model's ``generate`` loop
on the main thread is Python too: on a 2-core machine the two take turns, and every image's
preparation shows up in the run's wall time. A plain recipe (resize to a fixed size, or the shortest
edge then a centre crop; rescale; normalise) is a Pillow resize and three numpy operations, which
release the GIL. The text half (the prompt's tokens) is the same for every image and is made once.

A processor only gets this path after the recipe reproduced its output on probe images of several
shapes (pixels within float rounding, every other output identical); anything else (a torchvision
backend, padding, dynamic resolution, image-dependent tokens) keeps the processor for every image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PROBE_SIZES = ((640, 480), (333, 517), (256, 256), (901, 215))  # (width, height): wide, tall, square, odd
TOLERANCE = 1e-4  # normalised pixels are ~±2; float32 rounding differences are ~1e-7


@dataclass(frozen=True)
class PixelRecipe:
    """What a plain image processor does to one RGB image, as (3, H, W) float32."""

    size: tuple[int, int] | None  # (height, width) to resize to
    shortest_edge: int | None  # or: resize so the short side is this (aspect kept)
    crop: tuple[int, int] | None  # then a centre crop to (height, width)
    resample: int
    scale: float | None
    mean: np.ndarray | None
    std: np.ndarray | None

    def target(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, rounded as transformers rounds it."""
        if self.size is not None:
            return self.size[1], self.size[0]
        assert self.shortest_edge is not None
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def __call__(self, image: Image.Image) -> np.ndarray:
        size = self.target(*image.size)
        if size != image.size:
            image = image.resize(size, Image.Resampling(self.resample))
        if self.crop is not None:
            ch, cw = self.crop
            left, top = (image.width - cw) // 2, (image.height - ch) // 2
            image = image.crop((left, top, left + cw, top + ch))
        x = np.asarray(image, dtype=np.float32)
        if self.scale is not None:
            x *= np.float32(self.scale)
        if self.mean is not None and self.std is not None:
            x -= self.mean
            x /= self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def _get(obj: Any, key: str) -> Any:
    """A setting of the processor (attribute), or a field of a size (dict, or transformers 5's SizeDict)."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _channels(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
    return np.asarray(values, dtype=np.float32).reshape(1, 1, -1) if len(values) == 3 else None


# The switches the recipe knows (``default_to_square`` changes the resize, which the probes check).
# Any other switched on (Gemma 3's ``do_pan_and_scan``, Idefics' ``do_image_splitting``, InternVL's
# ``crop_to_patches``, Aria's ``split_image``, Donut's ``do_thumbnail``, ...) may act only on images
# larger or longer than the probes, so the probes passing proves nothing about it.
KNOWN_SWITCHES = frozenset({"do_resize", "do_rescale", "do_normalize", "do_center_crop", "do_convert_rgb", "do_pad",
                            "default_to_square"})


def _unknown_step(image_processor: Any) -> bool:
    for name in dir(image_processor):
        if name.startswith("_") or name in KNOWN_SWITCHES:
            continue
        try:
            value = getattr(image_processor, name, None)
        except Exception:  # a property that needs more than the settings
            continue
        if value is True or (name.startswith("do_") and isinstance(value, int) and value):
            return True
    return False


def recipe_for(image_processor: Any) -> PixelRecipe | None:
    """The plain recipe this processor's settings describe, or None when they describe something else."""
    if image_processor is None or _get(image_processor, "do_pad") or not _get(image_processor, "do_resize"):
        return None
    if _unknown_step(image_processor):
        return None
    size = _get(image_processor, "size")
    height, width, short = (_get(size, k) for k in ("height", "width", "shortest_edge"))
    if isinstance(height, int) and isinstance(width, int):
        fixed, shortest = (height, width), None
    elif isinstance(short, int) and not _get(size, "longest_edge"):
        fixed, shortest = None, short
    else:
        return None
    crop = None
    if _get(image_processor, "do_center_crop"):
        crop_size = _get(image_processor, "crop_size")
        ch, cw = _get(crop_size, "height"), _get(crop_size, "width")
        if not (isinstance(ch, int) and isinstance(cw, int)):
            return None
        crop = (ch, cw)
    try:
        resample = int(_get(image_processor, "resample") if _get(image_processor, "resample") is not None else 2)
        Image.Resampling(resample)
    except (TypeError, ValueError):
        return None  # a torchvision interpolation mode, not Pillow's
    scale = float(_get(image_processor, "rescale_factor")) if _get(image_processor, "do_rescale") else None
    mean = std = None
    if _get(image_processor, "do_normalize"):
        mean, std = _channels(_get(image_processor, "image_mean")), _channels(_get(image_processor, "image_std"))
        if mean is None or std is None:
            return None
    return PixelRecipe(fixed, shortest, crop, resample, scale, mean, std)


def _probe(width: int, height: int, seed: int) -> Image.Image:
    """A picture with detail at every scale (smooth ramps plus noise), so resampling differences show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x ^ y) & 255], -1)
    noise = rng.integers(-40, 40, (height, width, 3))
    return Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class FastPath:
    """The recipe plus the outputs shared by every image (the prompt's tokens), as the processor gives them."""

    recipe: PixelRecipe
    shared: dict[str, Any]

    def __call__(self, image: Image.Image) -> dict[str, Any]:
        import torch

        return {**self.shared, "pixel_values": torch.from_numpy(self.recipe(image))[None]}


def fast_path(processor: Any, run_processor: Callable[[Image.Image], dict[str, Any]]) -> FastPath | None:
    """A :class:`FastPath` that reproduces ``run_processor`` (the processor on one image, as the
    captioner calls it) on every probe image, or None."""
    import torch

    recipe = recipe_for(getattr(processor, "image_processor", None))
    if recipe is None:
        return None
    shared: dict[str, Any] | None = None
    try:
        for seed, (width, height) in enumerate(PROBE_SIZES):
            image = _probe(width, height, seed)
            out = run_processor(image)
            pixels = out.get("pixel_values")
            rest = {k: v for k, v in out.items() if k != "pixel_values"}
            if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.float32:
                return None
            mine = torch.from_numpy(recipe(image))[None]
            if mine.shape != pixels.shape or float((mine - pixels).abs().max()) > TOLERANCE:
                return None
            if shared is None:
                shared = rest
            elif shared.keys() != rest.keys() or not all(_same(shared[k], rest[k]) for k in rest):
                return None  # the text half depends on the image (dynamic resolution): not shared
    except Exception:  # a processor that will not take our probes: it keeps doing every image itself
        return None
    return FastPath(recipe, shared or {})


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b

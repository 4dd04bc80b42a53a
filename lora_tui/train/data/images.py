"""Image loading and per-sample augmentation for the training data, as sd-scripts does it.

sd-scripts opens images with PIL (no EXIF rotation; headers sized the same way), converts to RGB,
resizes so the image covers its bucket (area filter when shrinking, Lanczos when enlarging, or the
subset's ``resize_interpolation``), crops to the bucket (centre, or random with ``random_crop``),
applies ``color_aug`` (hue shift or "gamma", a third of the time) and ``flip_aug``, then normalises
to [-1, 1]. OpenCV is not a dependency here: Pillow's box filter stands in for ``INTER_AREA``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lora_tui.core.errors import TrainError

# Pillow filters for sd-scripts' resize_interpolation names ("area" is OpenCV's INTER_AREA there).
_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "linear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "cubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "box": Image.Resampling.BOX,
}


def load_rgb(path: Path | str) -> Image.Image:
    """The image as RGB, without EXIF transposition (sd-scripts sizes and trains on stored pixels)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB") if img.mode != "RGB" else img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TrainError(f"cannot read image: {exc}", path=path, hint="remove or replace the file") from None


def crop_ltrb(bucket: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """sd-scripts' ``get_crop_ltrb``: where the whole image would sit, letterboxed, in the bucket
    (the values SDXL's size conditioning and the latent cache record; floats floored as there)."""
    bucket_ar = bucket[0] / bucket[1]
    image_ar = image_size[0] / image_size[1]
    if bucket_ar > image_ar:
        width, height = bucket[1] * image_ar, float(bucket[1])
    else:
        width, height = float(bucket[0]), bucket[0] / image_ar
    left = (bucket[0] - width) // 2
    top = (bucket[1] - height) // 2
    return int(left), int(top), int(left + width), int(top + height)


def resize_and_crop(img: Image.Image, bucket: tuple[int, int], resized: tuple[int, int], *,
                    random_crop: bool = False, rng: random.Random | None = None,
                    interpolation: str | None = None) -> Image.Image:
    """Resize to ``resized`` (the bucket plan's cover size) and crop to ``bucket``.

    The crop is centred (``trim // 2``) unless ``random_crop``, then ``rng.randint(0, trim)`` per
    axis, width first — sd-scripts' ``trim_and_resize_if_required``.
    """
    width, height = img.size
    if (width, height) != tuple(resized):
        name = interpolation or ("area" if width >= resized[0] and height >= resized[1] else "lanczos")
        img = img.resize(tuple(resized), _FILTERS.get(name, Image.Resampling.LANCZOS))
    width, height = img.size
    left = top = 0
    if width > bucket[0]:
        trim = width - bucket[0]
        left = (rng or random).randint(0, trim) if random_crop else trim // 2
    if height > bucket[1]:
        trim = height - bucket[1]
        top = (rng or random).randint(0, trim) if random_crop else trim // 2
    if (left, top, width, height) != (0, 0, *bucket):
        img = img.crop((left, top, left + bucket[0], top + bucket[1]))
    if img.size != tuple(bucket):  # a smaller image than its bucket means a wrong size in the plan
        raise TrainError(f"image is {img.size[0]}×{img.size[1]} after resizing, smaller than its bucket "
                         f"{bucket[0]}×{bucket[1]}", hint="its header size may be wrong; re-save the image")
    return img


def color_aug(pixels: np.ndarray, rng: random.Random) -> np.ndarray:
    """sd-scripts' weak colour augmentation: with probability 0.33, either a hue shift of up to ±8
    (OpenCV hue units, 0–180) or its unnormalised "gamma" (``pixels ** g``, g in [0.95, 1.05],
    clipped to 255)."""
    if rng.random() > 0.33:
        return pixels
    if rng.random() > 0.5:
        shift = rng.uniform(-8, 8)
        if shift < 0:
            shift += 180
        hsv = np.array(Image.fromarray(pixels, "RGB").convert("HSV"), dtype=np.float32)
        hsv[..., 0] = (hsv[..., 0] + shift * 256.0 / 180.0) % 256.0  # Pillow hue spans 0–255
        return np.array(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))
    gamma = rng.uniform(0.95, 1.05)
    return np.clip(pixels.astype(np.float64) ** gamma, 0, 255).astype(np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """HWC uint8 → CHW float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    tensor = torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


def prepare_image(path: Path | str, bucket: tuple[int, int], resized: tuple[int, int], *,
                  random_crop: bool = False, use_color_aug: bool = False, flip: bool = False,
                  rng: random.Random | None = None, interpolation: str | None = None) -> torch.Tensor:
    """One training image as a (3, H, W) tensor in [-1, 1], augmented in sd-scripts' order
    (crop, colour, flip)."""
    rng = rng or random.Random()
    img = resize_and_crop(load_rgb(path), bucket, resized, random_crop=random_crop, rng=rng,
                          interpolation=interpolation)
    pixels = np.asarray(img, dtype=np.uint8)
    if use_color_aug:
        pixels = color_aug(pixels, rng)
    if flip:
        pixels = pixels[:, ::-1, :]
    return to_tensor(pixels)

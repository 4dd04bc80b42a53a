"""Builders for tiny projects: images drawn in memory, captions and a lora-tui.toml."""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from PIL import Image


def image_bytes(size: tuple[int, int], fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    img.putpixel((0, 0), (rng.randrange(256), seed % 256, 7))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def write_images(folder: Path, sizes: Iterable[tuple[int, int]], *, prefix: str = "img", ext: str = ".png",
                 captions: Mapping[int, str] | None = None, caption_ext: str = ".txt", seed: int = 0) -> list[Path]:
    """Write distinct images (and optional captions by index) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}[ext.lower()]
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"{prefix}{i:04d}{ext}"
        path.write_bytes(image_bytes(size, fmt, seed * 100003 + i))
        if captions and i in captions:
            (folder / f"{prefix}{i:04d}{caption_ext}").write_text(captions[i], encoding="utf-8")
        paths.append(path)
    return paths


def write_project(root: Path, datasets: list[dict[str, Any]], *, general: dict[str, Any] | None = None,
                  training: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
                  name: str = "proj", launch: dict[str, Any] | None = None) -> Path:
    """Write a lora-tui.toml; datasets are sd-scripts-style dicts with a ``subsets`` list."""
    doc: dict[str, Any] = {"project": {"name": name}}
    doc["model"] = model if model is not None else {"pretrained_model_name_or_path": "model.safetensors"}
    doc["general"] = general if general is not None else {"caption_extension": ".txt"}
    doc["datasets"] = datasets
    doc["training"] = training if training is not None else {
        "network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 10}
    if launch:
        doc["launch"] = launch
    root.mkdir(parents=True, exist_ok=True)
    (root / "lora-tui.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    (root / "model.safetensors").write_bytes(b"x")
    return root


def write_caption_files(folder: Path, n: int = 3, prefix: str = "tag") -> list[Path]:
    """``n`` caption files ``0.txt``… holding "<prefix><i>, dog"."""
    paths = []
    for i in range(n):
        path = folder / f"{i}.txt"
        path.write_text(f"{prefix}{i}, dog\n")
        paths.append(path)
    return paths

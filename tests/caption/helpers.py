"""Tiny projects for captioning tests: solid-colour images, some captioned, one subset with a trigger word."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.helpers import write_project

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


def colour_project(root: Path, names: list[str], *, captions: dict[str, str] | None = None,
                   trigger: str | None = None, separator: str | None = None, size: tuple[int, int] = (32, 32)) -> Path:
    """A project with one subset ``pics``: ``<name>.png`` solid images (name like red1 → red)."""
    folder = root / "data" / "pics"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        colour = COLOURS[name.rstrip("0123456789")]
        Image.new("RGB", size, colour).save(folder / f"{name}.png")
    for name, text in (captions or {}).items():
        (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    subset: dict = {"name": "pics", "image_dir": "data/pics", "num_repeats": 1}
    if trigger:
        subset["trigger_word"] = trigger
    if separator:
        subset["caption_separator"] = separator
    return write_project(root, [{"resolution": 512, "subsets": [subset]}])

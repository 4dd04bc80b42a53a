"""Image previews that work over any SSH link: half-block cells (two pixels per cell, truecolor).

Decoding happens off the UI thread; thumbnails are cached (LRU) by path, mtime and target size so
stepping back and forth is instant. Kitty and Sixel output goes through
textual-image (see graphics.py); they share this cache.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageOps
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style


@lru_cache(maxsize=64)
def _thumbnail(path: str, mtime_ns: int, width: int, height: int) -> Image.Image:
    with Image.open(path) as im:
        im.draft("RGB", (width, height))  # JPEG: let libjpeg decode at 1/2..1/8 scale
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((width, height), Image.Resampling.BILINEAR)
        return im.copy()


def load_thumbnail(path: Path, cells_w: int, cells_h: int) -> Image.Image:
    """A thumbnail fitting ``cells_w`` × ``cells_h`` half-block cells (2 pixels per cell row)."""
    mtime = os.stat(path).st_mtime_ns
    return _thumbnail(str(path), mtime, max(1, cells_w), max(2, cells_h * 2))


def load_thumbnail_pixels(path: Path, width: int, height: int) -> Image.Image:
    """A thumbnail fitting ``width`` × ``height`` pixels, for Kitty/Sixel panes."""
    mtime = os.stat(path).st_mtime_ns
    return _thumbnail(str(path), mtime, max(1, width), max(1, height))


class HalfBlock:
    """A Rich renderable drawing a PIL image with '▀' cells: top pixel as foreground, bottom as background."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        im = self.image
        w, h = im.size
        pixels = im.load()
        pad = max(0, (options.max_width - w) // 2)
        for y in range(0, h - 1, 2):
            if pad:
                yield Segment(" " * pad)
            for x in range(w):
                top, bottom = pixels[x, y], pixels[x, y + 1]
                yield Segment("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                         bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
            yield Segment.line()

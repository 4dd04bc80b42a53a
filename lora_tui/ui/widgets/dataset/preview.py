"""The image preview pane: decodes in a worker, shows the picture when ready.

Half-block cells are drawn by our own renderer (any terminal, any SSH link, tmux); Kitty and Sixel
go through textual-image (:mod:`lora_tui.ui.graphics`), decoded at the pane's pixel size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from lora_tui.ui.graphics import GRAPHIC_PROTOCOLS, cell_pixels, graphic_widget
from lora_tui.ui.image_view import HalfBlock, load_thumbnail, load_thumbnail_pixels


def undecodable(path: Path, exc: BaseException) -> str:
    """What the pane says instead of a picture: never a blank pane for a file that cannot be shown."""
    why = str(exc).replace(str(path), path.name) or type(exc).__name__
    return (f"⚠ {path.name} cannot be decoded\n{why}\n\n"
            "sd-scripts cannot read it either: re-export it, or move it out of the folder")


class ImagePreview(Container):
    DEFAULT_CSS = """
    ImagePreview { height: 1fr; }
    ImagePreview > #preview-text { height: 1fr; content-align: center middle; }
    ImagePreview > .graphic { width: auto; height: auto; max-height: 100%; max-width: 100%; }
    ImagePreview.graphic-shown > #preview-text { display: none; }
    ImagePreview.graphic-hidden > .graphic { display: none; }
    """

    @dataclass
    class Loaded(Message):
        path: Path
        image: Image.Image | None
        error: str | None = None
        cells: tuple[int, int] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path: Path | None = None
        self.shown: Path | None = None  # the picture on screen (may lag ``path`` while decoding)
        self.text = Static("", markup=False, id="preview-text")
        self.graphic: Any = None
        self.cells: tuple[int, int] | None = None  # the size the picture asked for is decoded at
        self.shown_cells: tuple[int, int] | None = None  # the size of the picture on screen

    @property
    def protocol(self) -> str:
        settings = getattr(self.app, "settings", None)
        return settings.image_protocol if settings is not None else "halfblock"

    def compose(self) -> ComposeResult:
        yield self.text
        if self.protocol in GRAPHIC_PROTOCOLS:
            self.graphic = graphic_widget(self.protocol, classes="graphic")
            yield self.graphic
        self.set_class(True, "graphic-hidden")

    def _show_text(self, text: Any) -> None:
        self.text.update(text)
        self.set_class(False, "graphic-shown")
        self.set_class(True, "graphic-hidden")

    def show(self, path: Path | None, neighbours: tuple[Path, ...] = ()) -> None:
        """Ask for ``path``; the caption is already on screen, the picture follows.

        The previous picture stays until the new one is decoded (no flash, no relayout), and the
        ``neighbours`` are decoded next into the cache, so stepping through images feels instant.
        """
        self.path = path
        if path is None:
            self._show_text("")
            return
        if self.protocol == "none":
            self._show_text(f"{path.name}\n(previews off: --image-protocol none)")
            return
        self.cells = self._pane_cells()
        self.load(path, neighbours, self.cells, self.graphic is not None)

    def _pane_cells(self) -> tuple[int, int]:
        return max(8, self.size.width), max(4, self.size.height)

    def on_resize(self) -> None:
        """A picture asked for before the pane had its size (or a resized terminal) is decoded again
        at the new size: otherwise it stays a thumbnail in a corner of the pane."""
        if self.path is not None and self.cells is not None and self._pane_cells() != self.cells:
            self.show(self.path)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load(self, path: Path, neighbours: tuple[Path, ...], cells: tuple[int, int], pixels: bool) -> None:
        worker = get_current_worker()
        if pixels:
            cw, ch = cell_pixels()
            size = (cells[0] * cw, cells[1] * ch)

            def decode(p: Path) -> Image.Image:
                return load_thumbnail_pixels(p, *size)
        else:
            def decode(p: Path) -> Image.Image:
                return load_thumbnail(p, *cells)
        try:
            image = decode(path)
        except Exception as exc:  # Pillow raises many types for broken files
            self.post_message(self.Loaded(path, None, undecodable(path, exc)))
        else:
            self.post_message(self.Loaded(path, image, cells=cells))
        for other in neighbours:  # prefetch into the LRU; a newer request cancels this
            if worker.is_cancelled:
                return
            with contextlib.suppress(Exception):
                decode(other)

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.path != self.path:
            return  # a newer image was asked for meanwhile
        if message.image is None:
            self._show_text(message.error or f"⚠ {message.path.name} cannot be shown")
        elif self.graphic is not None:
            self.graphic.image = message.image
            self.set_class(True, "graphic-shown")
            self.set_class(False, "graphic-hidden")
        else:
            self._show_text(HalfBlock(message.image))
        self.shown, self.shown_cells = message.path, message.cells
        if message.cells is not None and message.cells != self._pane_cells():
            self.show(message.path)  # decoded for a size the pane no longer has (laid out meanwhile)

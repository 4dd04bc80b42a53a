"""The image preview pane: decodes in a worker, shows half-block cells when ready."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from textual import on, work
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from lora_tui.ui.image_view import HalfBlock, load_thumbnail


class ImagePreview(Static):
    DEFAULT_CSS = "ImagePreview { height: 1fr; content-align: center middle; }"

    @dataclass
    class Loaded(Message):
        path: Path
        image: Image.Image | None
        error: str | None = None

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.path: Path | None = None
        self.shown: Path | None = None  # the picture on screen (may lag ``path`` while decoding)

    def show(self, path: Path | None, neighbours: tuple[Path, ...] = ()) -> None:
        """Ask for ``path``; the caption is already on screen, the picture follows.

        The previous picture stays until the new one is decoded (no flash, no relayout), and the
        ``neighbours`` are decoded next into the cache, so stepping through images feels instant.
        """
        self.path = path
        if path is None:
            self.update("")
            return
        if getattr(self.app, "settings", None) is not None and self.app.settings.image_protocol == "none":
            self.update(f"{path.name}\n(previews off: --image-protocol none)")
            return
        self.load(path, neighbours, max(8, self.size.width), max(4, self.size.height))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load(self, path: Path, neighbours: tuple[Path, ...], width: int, height: int) -> None:
        worker = get_current_worker()
        try:
            image = load_thumbnail(path, width, height)
        except Exception as exc:  # Pillow raises many types for broken files
            self.post_message(self.Loaded(path, None, f"cannot show {path.name}: {exc}"))
        else:
            self.post_message(self.Loaded(path, image))
        for other in neighbours:  # prefetch into the LRU; a newer request cancels this
            if worker.is_cancelled:
                return
            with contextlib.suppress(Exception):
                load_thumbnail(other, width, height)

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.path != self.path:
            return  # a newer image was asked for meanwhile
        if message.image is None:
            self.update(message.error or "")
        else:
            self.update(HalfBlock(message.image))
        self.shown = message.path

"""The image preview pane: decodes in a worker, shows half-block cells when ready."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from textual import on, work
from textual.message import Message
from textual.widgets import Static

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

    def show(self, path: Path | None) -> None:
        """Ask for ``path``; the caption is already on screen, the picture follows."""
        self.path = path
        if path is None:
            self.update("")
            return
        if getattr(self.app, "settings", None) is not None and self.app.settings.image_protocol == "none":
            self.update(f"{path.name}\n(previews off: --image-protocol none)")
            return
        self.update(f"loading {path.name}…")
        self.load(path, max(8, self.size.width), max(4, self.size.height))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load(self, path: Path, width: int, height: int) -> None:
        try:
            image = load_thumbnail(path, width, height)
        except Exception as exc:  # Pillow raises many types for broken files
            self.post_message(self.Loaded(path, None, f"cannot show {path.name}: {exc}"))
            return
        self.post_message(self.Loaded(path, image))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.path != self.path:
            return  # a newer image was asked for meanwhile
        if message.image is None:
            self.update(message.error or "")
        else:
            self.update(HalfBlock(message.image))

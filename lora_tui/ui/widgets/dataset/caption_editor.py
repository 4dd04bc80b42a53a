"""The caption editor: a TextArea bound to one image; the screen saves it through the journal."""

from __future__ import annotations

from textual.widgets import TextArea


class CaptionEditor(TextArea):
    DEFAULT_CSS = "CaptionEditor { height: 8; border: round $primary-darken-2; } " \
                  "CaptionEditor:focus { border: round $primary; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, tab_behavior="focus", **kwargs)
        self.loaded_text = ""

    def load_caption(self, text: str, title: str) -> None:
        self.loaded_text = text
        self.load_text(text)
        self.border_title = title

    @property
    def dirty(self) -> bool:
        return self.text != self.loaded_text

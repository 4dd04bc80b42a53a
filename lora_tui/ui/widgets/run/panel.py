"""A fixed-size block of Rich Text that repaints only itself, and only when its text changed.

``Static.update`` asks for a new layout of the whole screen (its size may change), which costs a
full-screen render; the monitor's header, GPU text and log tail change every second while a run
trains, so they are fixed-height panels instead: a changed panel repaints its own region.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget


class TextPanel(Widget):
    DEFAULT_CSS = "TextPanel { height: 1; }"

    def __init__(self, text: str | Text = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = text if isinstance(text, Text) else Text(text)

    def set(self, text: str | Text) -> bool:
        """Show ``text``; returns whether anything changed (and so was repainted)."""
        text = text if isinstance(text, Text) else Text(text)
        if text == self.text:
            return False
        self.text = text
        self.refresh()
        return True

    def render(self) -> Text:
        return self.text

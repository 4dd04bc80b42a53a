"""The caption editor: a TextArea bound to one image; the screen saves it through the journal.

While typing a tag it suggests the dataset's most used tag with that prefix (ghost text); → or tab
takes it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import TextArea

from lora_tui.core.captions import split_tags
from lora_tui.core.tag_complete import TagVocabulary, typed_fragment


class CaptionEditor(TextArea):
    DEFAULT_CSS = "CaptionEditor { height: 8; border: round $primary-darken-2; } " \
                  "CaptionEditor:focus { border: round $primary; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(soft_wrap=True, tab_behavior="focus", **kwargs)
        self.loaded_text = ""
        self.title_text = ""  # the plain title (file names may hold [ ], never markup)
        self.vocabulary = TagVocabulary({})
        self.separator = ","

    def load_caption(self, text: str, title: str, separator: str = ",") -> None:
        self.loaded_text = text
        self.separator = separator or ","
        self.load_text(text)
        self.title_text = title
        self.border_title = Text(title)  # a str would be parsed as markup: "x[/b].png" raised MarkupError

    @property
    def dirty(self) -> bool:
        return self.text != self.loaded_text

    def update_suggestion(self) -> None:
        """Offer the rest of the tag being typed, only at the end of a tag (not mid-word)."""
        if self.read_only or not self.selection.is_empty or not len(self.vocabulary):
            self.suggestion = ""
            return
        row, column = self.cursor_location
        line = self.document.get_line(row)
        after = line[column:]
        if after and not after.lstrip().startswith(self.separator) and after.strip():
            self.suggestion = ""
            return
        fragment = typed_fragment(line[:column], self.separator)
        if len(fragment) < 2:
            self.suggestion = ""
            return
        present = set(split_tags(line, self.separator))
        self.suggestion = self.vocabulary.completion(fragment, present)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "tab" and self.suggestion:
            event.stop()
            event.prevent_default()
            self.insert(self.suggestion)
            return
        await super()._on_key(event)

"""Tag chips: one caption line shown as its tags, edited by whole tags with the keyboard.

The chips are a view of the caption editor's text, never a second copy of the truth: every change
posts :class:`TagChips.Changed` with the new tag list and the screen writes it into the editor, where
autosave and the journal take over as for typed edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from lora_tui.ui.actions import Action, Actions


class TagChips(Widget, can_focus=True):
    DEFAULT_CSS = """
    TagChips { height: 8; border: round $primary-darken-2; padding: 0 1; }
    TagChips:focus { border: round $primary; }
    """
    ACTIONS = Actions("chips", "Tag chips", intro="The caption as its tags (c or ctrl+t switches).", actions=(
        Action("chips.prev", "left,h", "Prev tag", "move(-1)", show=False, palette=False),
        Action("chips.next", "right,l", "Next tag", "move(1)", show=False, palette=False),
        Action("chips.first", "home", "First tag", "jump(0)", show=False, palette=False),
        Action("chips.last", "end", "Last tag", "jump(-1)", show=False, palette=False),
        Action("chips.shift_left", "shift+left,H", "Move tag left", "shift(-1)", palette=False),
        Action("chips.shift_right", "shift+right,L", "Move tag right", "shift(1)", palette=False),
        Action("chips.delete", "delete,backspace,d", "Delete tag", "delete", palette=False),
        Action("chips.add", "a,insert", "Add tag", "add", palette=False),
        Action("chips.edit", "enter,e", "Edit tag", "rename", title="Edit tag (with completion)", palette=False),
    ))
    BINDINGS = ACTIONS.bindings()

    @dataclass
    class Changed(Message):
        """The tags after an edit, in order."""

        tags: list[str]

    @dataclass
    class AskTag(Message):
        """Ask the screen for a tag's text (``index`` None: a new tag after the cursor)."""

        index: int | None
        value: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tags: list[str] = []
        self.cursor = 0

    def set_tags(self, tags: list[str], cursor: int | None = None) -> None:
        self.tags = list(tags)
        if cursor is not None:
            self.cursor = cursor
        self.cursor = max(0, min(self.cursor, len(self.tags) - 1))
        self.refresh()

    @property
    def current(self) -> str | None:
        return self.tags[self.cursor] if self.tags else None

    def render(self) -> Text:
        if not self.tags:
            return Text("no tags: a adds one · escape goes back to text", style="italic")
        text = Text()
        for i, tag in enumerate(self.tags):
            style = "bold reverse" if i == self.cursor and self.has_focus else "reverse dim" \
                if i == self.cursor else "underline"
            text.append(f" {tag} ", style=style)  # Text.append never parses markup: tags may hold [ ]
            text.append("  ")
        return text

    def _changed(self) -> None:
        self.refresh()
        self.post_message(self.Changed(list(self.tags)))

    def action_move(self, delta: int) -> None:
        if self.tags:
            self.cursor = max(0, min(len(self.tags) - 1, self.cursor + delta))
            self.refresh()

    def action_jump(self, where: int) -> None:
        if self.tags:
            self.cursor = where % len(self.tags)
            self.refresh()

    def action_shift(self, delta: int) -> None:
        """Move the tag itself: order matters to keep_tokens and to shuffle-free training."""
        j = self.cursor + delta
        if not self.tags or not 0 <= j < len(self.tags):
            return
        self.tags[self.cursor], self.tags[j] = self.tags[j], self.tags[self.cursor]
        self.cursor = j
        self._changed()

    def action_delete(self) -> None:
        if not self.tags:
            return
        del self.tags[self.cursor]
        self.cursor = max(0, min(self.cursor, len(self.tags) - 1))
        self._changed()

    def action_add(self) -> None:
        self.post_message(self.AskTag(None, ""))

    def action_rename(self) -> None:
        if self.tags:
            self.post_message(self.AskTag(self.cursor, self.tags[self.cursor]))

    def apply_answer(self, index: int | None, value: str) -> None:
        """Put the screen's answer in place: a new tag after the cursor, or the edited one."""
        value = value.strip()
        if index is None:
            if not value:
                return
            at = self.cursor + 1 if self.tags else 0
            self.tags.insert(at, value)
            self.cursor = at
        elif not value:
            del self.tags[index]
            self.cursor = max(0, min(index, len(self.tags) - 1))
        else:
            self.tags[index] = value
        self._changed()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

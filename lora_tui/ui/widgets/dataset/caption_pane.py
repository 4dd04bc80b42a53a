"""The caption pane: the caption editor and its tag-chips view, and the switch between them.

It owns the chip mode: chips edit the editor's text (the one truth) and the pane handles their
messages itself, so the screen only sees what any caption edit posts (``TextArea.Changed``).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import TextArea

from lora_tui.core.captions import caption_lines, join_tags, split_tags
from lora_tui.ui.screens.modals import AskText
from lora_tui.ui.widgets.dataset.caption_editor import CaptionEditor
from lora_tui.ui.widgets.dataset.tag_chips import TagChips


class CaptionPane(Vertical):
    DEFAULT_CSS = "CaptionPane { height: auto; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.editor = CaptionEditor(id="editor")
        self.chips = TagChips(id="chips")
        self.chips.display = False  # set before mounting: hiding it after would lay the screen out twice
        self.chip_mode = False

    def compose(self) -> ComposeResult:
        yield self.editor
        yield self.chips

    @property
    def separator(self) -> str:
        return self.editor.separator

    def load(self, text: str, title: str, separator: str, *, read_only: bool) -> None:
        """Show one image's caption; back to text when this caption cannot be chips."""
        editor = self.editor
        editor.load_caption(text, title, separator)
        editor.read_only = read_only
        if self.chip_mode and (read_only or len(caption_lines(text)) > 1):
            self.set_chip_mode(False)
            self.notify("this caption is edited as text (several lines or read-only)", timeout=3)
        self.sync_chips()

    def clear(self) -> None:
        self.editor.load_caption("", "")

    def focus_editing(self) -> None:
        (self.chips if self.chip_mode else self.editor).focus()

    @property
    def editing(self) -> bool:
        return self.editor.has_focus or self.chips.has_focus

    def sync_chips(self) -> None:
        """Show the editor's caption as chips (when the image changes in chip mode)."""
        if self.chip_mode:
            self.chips.set_tags(split_tags(self.editor.text.strip("\r\n"), self.separator), cursor=0)
            self.chips.border_title = Text(self.editor.title_text)

    def toggle(self, has_image: bool) -> None:
        if self.chip_mode:
            self.set_chip_mode(False)
            self.editor.focus()
            return
        if not has_image or self.editor.read_only:
            self.notify("this caption cannot be edited here", severity="warning", timeout=3)
            return
        if len(caption_lines(self.editor.text)) > 1:
            self.notify("chips edit one-line captions; this one has several lines (edit it as text)",
                        severity="warning", timeout=4)
            return
        self.set_chip_mode(True)
        self.sync_chips()
        self.chips.focus()

    def set_chip_mode(self, on_: bool) -> None:
        self.chip_mode = on_
        self.chips.display = on_
        self.editor.display = not on_

    @on(TagChips.Changed)
    def _chips_changed(self, message: TagChips.Changed) -> None:
        message.stop()
        text = self.editor.text
        ending = text[len(text.rstrip("\r\n")):]
        self.editor.text = join_tags(message.tags, self.separator) + ending
        self.post_message(TextArea.Changed(self.editor))  # the status line shows "unsaved"

    @on(TagChips.AskTag)
    def _ask_tag(self, message: TagChips.AskTag) -> None:
        message.stop()
        vocab = self.editor.vocabulary
        suggestions = sorted(vocab.counts, key=lambda t: (-vocab.counts[t], t))
        title = "Add a tag after the cursor" if message.index is None else "Edit the tag (empty deletes it)"
        sep = self.separator

        def done(answer: str | None) -> None:
            if answer is None:
                return
            if sep.strip() and sep.strip() in answer:
                self.notify(f"a tag cannot contain the caption separator {sep.strip()!r}", severity="error",
                            markup=False, timeout=4)
                return
            self.chips.apply_answer(message.index, answer)

        self.app.push_screen(AskText(title, message.value, suggestions), done)

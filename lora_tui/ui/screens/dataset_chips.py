"""Caption editing helpers for the dataset screen: tag completion and the tag-chip mode.

A mixin, like the bulk actions and the outside-change handling: the screen owns the editor and the
current row; this adds the vocabulary the editor completes from and the chips view of the caption.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import TextArea

from lora_tui.core.captions import caption_lines, join_tags, split_tags
from lora_tui.ui.screens.modals import AskText
from lora_tui.ui.widgets.dataset.caption_editor import CaptionEditor
from lora_tui.ui.widgets.dataset.tag_chips import TagChips


class CaptionModes:
    """Text or chips editing of the current caption, with completion from the dataset's tags."""

    editor: CaptionEditor
    chips: TagChips
    chip_mode = False

    def separator(self) -> str:
        return (self.row.subset.get("caption_separator") if self.row is not None else None) or ","

    def sync_chips(self) -> None:
        """Show the editor's caption as chips (called when the image changes in chip mode)."""
        if self.chip_mode:
            self.chips.set_tags(split_tags(self.editor.text.strip("\r\n"), self.separator()), cursor=0)
            self.chips.border_title = Text(self.editor.title_text)

    def action_toggle_chips(self) -> None:
        if self.chip_mode:
            self._chip_mode(False)
            self.editor.focus()
            return
        if self.row is None or self.editor.read_only:
            self.notify("this caption cannot be edited here", severity="warning", timeout=3)
            return
        if len(caption_lines(self.editor.text)) > 1:
            self.notify("chips edit one-line captions; this one has several lines (edit it as text)",
                        severity="warning", timeout=4)
            return
        self._chip_mode(True)
        self.sync_chips()
        self.chips.focus()

    def _chip_mode(self, on: bool) -> None:
        self.chip_mode = on
        self.chips.display = on
        self.editor.display = not on

    def on_tag_chips_changed(self, message: TagChips.Changed) -> None:
        text = self.editor.text
        ending = text[len(text.rstrip("\r\n")):]
        self.editor.text = join_tags(message.tags, self.separator()) + ending
        self.post_message(TextArea.Changed(self.editor))  # the status line shows "unsaved"

    def on_tag_chips_ask_tag(self, message: TagChips.AskTag) -> None:
        vocab = self.editor.vocabulary
        suggestions = sorted(vocab.counts, key=lambda t: (-vocab.counts[t], t))
        title = "Add a tag after the cursor" if message.index is None else "Edit the tag (empty deletes it)"
        sep = self.separator()

        def done(answer: str | None) -> None:
            if answer is None:
                return
            if sep.strip() and sep.strip() in answer:
                self.notify(f"a tag cannot contain the caption separator {sep.strip()!r}", severity="error",
                            markup=False, timeout=4)
                return
            self.chips.apply_answer(message.index, answer)

        self.app.push_screen(AskText(title, message.value, suggestions), done)

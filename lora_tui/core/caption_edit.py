"""Editing one caption by hand: the same journal and atomic write as the bulk operations."""

from __future__ import annotations

from lora_tui.core.captions import BOM, CaptionText
from lora_tui.core.errors import CaptionError
from lora_tui.core.journal import Change, Journal
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord, caption_target, load_caption


def current_text(record: ImageRecord) -> str:
    """The caption file's text as the editor shows it ("" when there is no file)."""
    if record.caption_pending:
        load_caption(record)
    return record.caption.raw if record.caption is not None else ""


def save_caption(journal: Journal, subset: Subset, record: ImageRecord, text: str) -> bool:
    """Write ``text`` as the image's caption file (journaled, atomic); False if nothing changed.

    A new file is only created for non-blank text, so an untouched uncaptioned image keeps falling
    back to class_tokens. The record is updated to what is now on disk.
    """
    if record.caption_pending:
        load_caption(record)
    if record.caption_error:
        raise CaptionError(record.caption_error, hint="fix or remove that file first")
    if record.caption is None and not text.strip():
        return False
    if record.caption is not None and text == record.caption.raw:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    target = caption_target(subset, record)
    before = None
    if record.caption is not None:
        before = (BOM if record.caption.had_bom else "") + record.caption.raw
    if before == text:
        return False
    journal.apply(f"edit caption {record.name}", [Change(target, before, text)])
    record.caption = CaptionText(text)
    if record.caption_name is None:
        record.caption_name = target.name
        record.__dict__.pop("caption_path", None)  # drop the cached property
    return True

"""Editing one caption by hand: the same journal, lock and compare-and-swap as the bulk operations."""

from __future__ import annotations

from lora_tui.core.captions import BOM, CaptionText
from lora_tui.core.errors import CaptionError
from lora_tui.core.journal import Change, Journal
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord, caption_target, load_caption
from lora_tui.core.swap import CHANGED_ELSEWHERE


class CaptionConflict(CaptionError):
    """The caption file changed on disk since the editor loaded it; nothing was overwritten."""


def current_text(record: ImageRecord, subset: Subset | None = None) -> str:
    """The caption file's text as the editor shows it ("" when there is no file); for a fine-tuning
    entry (given its subset), the text core.metadata_edit shows and saves back."""
    if record.meta_key is not None and subset is not None:
        from lora_tui.core.metadata_edit import editable_text

        return editable_text(subset, record)
    if record.caption_pending:
        load_caption(record)
    return record.caption.raw if record.caption is not None else ""


def save_caption(journal: Journal, subset: Subset, record: ImageRecord, text: str, *,
                 wait: float | None = None) -> bool:
    """Write ``text`` as the image's caption file (journaled, atomic); False if nothing changed.

    A new file is only created for non-blank text, so an untouched uncaptioned image keeps falling
    back to class_tokens. The record is updated to what is now on disk. If the file no longer holds
    what the record says (someone else saved it), :class:`CaptionConflict` is raised and nothing is
    written; :class:`~lora_tui.core.errors.BusyError` if another writer holds the lock past ``wait``.
    A fine-tuning entry is saved into its metadata file instead (core.metadata_edit).
    """
    if record.meta_key is not None:
        from lora_tui.core.metadata_edit import save_meta_caption

        return save_meta_caption(journal, subset, record, text, wait=wait)
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
    outcome = journal.apply(f"edit caption {record.name}", [Change(target, before, text)], wait=wait)
    if outcome is not None and outcome.left_alone:
        _, why = outcome.left_alone[0]
        if why == CHANGED_ELSEWHERE:
            raise CaptionConflict("caption file changed on disk since it was loaded; nothing was overwritten",
                                  path=target, hint="keep yours or load theirs")
        raise CaptionError(f"cannot save: {why}", path=target)
    record.caption = CaptionText(text)
    if record.caption_name is None:
        record.caption_name = target.name
        record.__dict__.pop("caption_path", None)  # drop the cached property
    return True

"""Editing a fine-tuning caption: the text shown, and how it goes back into the metadata file.

The editor shows what sd-scripts trains on for the entry: ``caption + caption_separator + tags``
(either alone when the other is empty). Saving splits it back so that sd-scripts trains exactly the
edited text: tags left unchanged at the end stay in ``tags``; an entry with only tags keeps them in
``tags``; otherwise the text becomes ``caption`` and ``tags`` is dropped. With ``enable_wildcard``
sd-scripts appends the tags to every caption line, so there the editor shows and edits ``caption``
alone and ``tags`` is kept as is.

The write is a whole-file journal change (core.metadata_doc): read under the project's write lock,
the entry checked against what the editor loaded (a change made elsewhere raises
:class:`CaptionConflict`, nothing is written), then swapped in atomically and undoable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lora_tui.core.caption_edit import CaptionConflict
from lora_tui.core.captions import map_caption_lines
from lora_tui.core.errors import CaptionError, LoraTuiError
from lora_tui.core.journal import Change, Journal
from lora_tui.core.metadata_doc import MetaDoc
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord
from lora_tui.core.swap import CHANGED_ELSEWHERE


def _raw(row: dict[str, Any]) -> tuple[str | None, str | None]:
    """(caption, tags) of an entry as core.scan records them in ``meta_raw``."""
    caption, tags = row.get("caption"), row.get("tags")
    return (None if caption is None else str(caption), None if tags is None else str(tags))


def editable_text(subset: Subset, record: ImageRecord) -> str:
    """The text the editor shows for a fine-tuning entry (see the module docstring)."""
    caption, tags = record.meta_raw or (record.meta_caption, None)
    if subset.get("enable_wildcard"):
        return caption or ""
    sep = subset.get("caption_separator") or ","
    caption = caption or ""
    return caption + sep + tags if caption and tags else caption or tags or ""


def split_edit(subset: Subset, raw: tuple[str | None, str | None], text: str) -> dict[str, str | None]:
    """The fields to set (None: remove) so that sd-scripts trains on ``text`` for this entry."""
    text = text.rstrip("\n")
    caption, tags = raw
    if subset.get("enable_wildcard") or not tags:
        return {"caption": text}
    sep = subset.get("caption_separator") or ","
    if not caption:
        return {"tags": text}
    if text == tags:
        return {"caption": ""}
    if text.endswith(sep + tags):
        return {"caption": text[: -len(sep + tags)]}
    return {"caption": text, "tags": None}


def text_on_disk(subset: Subset, record: ImageRecord) -> str | None:
    """The entry's editor text as the metadata file holds it now (None: gone or unreadable), so a
    change to another entry of the same file is not taken for a conflict with this one."""
    meta = subset.path("metadata_file")
    if meta is None or record.meta_key is None:
        return None
    try:
        row = MetaDoc.read(meta).entries.get(record.meta_key)
    except LoraTuiError:
        return None
    if row is None:
        return None
    return editable_text(subset, replace(record, meta_raw=_raw(row)))


def save_meta_caption(journal: Journal, subset: Subset, record: ImageRecord, text: str, *,
                      wait: float | None = None) -> bool:
    """Write the edited caption of a fine-tuning entry into its metadata file; False if unchanged."""
    meta = subset.path("metadata_file")
    if meta is None or record.meta_key is None:
        raise CaptionError(f"{record.path}: not a fine-tuning metadata entry")
    if text.rstrip("\n") == editable_text(subset, record):
        return False
    with journal.lock.hold(wait, f"edit caption {record.name}"):
        doc = MetaDoc.read(meta)
        row = doc.entries.get(record.meta_key)
        loaded = record.meta_raw or (record.meta_caption, None)
        if row is None or _raw(row) != loaded:
            raise CaptionConflict("this entry changed in the metadata file since it was loaded; nothing was "
                                  "overwritten", path=meta, hint="keep yours or load theirs")
        doc.set_fields(record.meta_key, split_edit(subset, loaded, text))
        outcome = journal.apply(f"edit caption {record.name}", [Change(meta, doc.text, doc.dumps())], wait=wait)
    if outcome is not None and outcome.left_alone:
        _, why = outcome.left_alone[0]
        if why == CHANGED_ELSEWHERE:
            raise CaptionConflict("metadata file changed on disk since it was read; nothing was overwritten",
                                  path=meta, hint="keep yours or load theirs")
        raise CaptionError(f"cannot save: {why}", path=meta)
    new = doc.entries[record.meta_key]
    record.meta_raw = _raw(new)
    sep = subset.get("caption_separator") or ","
    caption, tags = record.meta_raw
    caption, tags = caption or "", tags or ""
    record.meta_caption = caption + sep + tags if caption and tags else caption or tags
    return True


class MetaEdits:
    """A bulk edit's changes to fine-tuning entries, gathered per metadata file (core.bulk).

    Each file is read once; an entry that no longer holds what the scan read is skipped (named),
    and every file with edits becomes one whole-file :class:`Change` the journal swaps in.
    """

    def __init__(self, skipped: list[str]) -> None:
        self.skipped = skipped
        self.docs: dict[Path, MetaDoc | None] = {}
        self.entries: list[tuple[str, str, str]] = []

    def add(self, subset: Subset, record: ImageRecord, change: Callable[[str], str], wildcard: bool) -> None:
        meta = subset.path("metadata_file")
        if meta is None or record.meta_key is None:
            return
        if meta not in self.docs:
            try:
                self.docs[meta] = MetaDoc.read(meta)
            except LoraTuiError as exc:
                self.docs[meta] = None
                self.skipped.append(str(exc))
        doc = self.docs[meta]
        if doc is None:
            return
        before = editable_text(subset, record)
        after = map_caption_lines(before, wildcard, change)
        if after == before:
            return
        loaded = record.meta_raw or (record.meta_caption, None)
        row = doc.entries.get(record.meta_key)
        if row is None or _raw(row) != loaded:
            self.skipped.append(f"{record.path}: its entry in {meta.name} changed since it was read")
            return
        doc.set_fields(record.meta_key, split_edit(subset, loaded, after))
        self.entries.append((record.path_text, before, after))

    def changes(self) -> list[Change]:
        return [Change(path, doc.text, doc.dumps()) for path, doc in self.docs.items()
                if doc is not None and doc.changed]

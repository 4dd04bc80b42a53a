"""From a model's output to the caption file's new text, honouring the mode and the subset's settings.

Pure functions (no model, no disk): which images a run captions (``--missing-only``, the default,
never touches an existing caption; ``--overwrite`` replaces the first line; ``--append`` adds the new
tags the caption lacks), and the new text: the subset's trigger word first, then ``--prefix``, then
what the model said, joined with the subset's ``caption_separator``. Lines after the first (which
sd-scripts ignores unless ``enable_wildcard``) are kept verbatim.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lora_tui.core.captions import join_tags, map_caption_lines, split_tags
from lora_tui.core.journal import Change
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord, caption_target, load_caption

MODES = ("missing-only", "overwrite", "append")


def tag_key(tag: str) -> str:
    """Tags that differ only in case, underscores or escaped parentheses are the same tag
    (``long_hair`` = ``Long hair``; ``judy \\(character\\)``, as captions for A1111-style prompts
    write it, = ``judy (character)``; the one booru tag written with such a backslash, ``\\(^o^)/``,
    still matches only itself)."""
    return " ".join(tag.replace("\\(", "(").replace("\\)", ")").replace("_", " ").casefold().split())


def dedupe(tags: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for tag in tags:
        tag = tag.strip()
        key = tag_key(tag)
        if tag and key not in seen:
            seen.add(key)
            out.append(tag)
    return out


def has_caption(record: ImageRecord) -> bool:
    """A caption with text (a blank sidecar counts as missing)."""
    if record.caption_pending:
        load_caption(record)
    if record.meta_caption is not None:
        return bool(record.meta_caption.strip())
    return record.caption is not None and bool(record.caption.raw.strip())


def skip_reason(record: ImageRecord, mode: str) -> str | None:
    """Why this image is not captioned in ``mode`` (None: caption it); "" means silently (it has one)."""
    if record.caption_pending:
        load_caption(record)
    if record.meta_caption is not None or record.meta_raw is not None:
        return f"{record.path}: caption lives in a metadata file (fine-tuning subsets are not auto-captioned)"
    if record.caption_error:
        return record.caption_error
    if mode == "missing-only" and has_caption(record):
        return ""
    return None


def caption_line(subset: Subset, output: Sequence[str], prefix: str = "",
                 existing: Sequence[str] = ()) -> str:
    """The new first line: trigger word, existing tags (append), prefix, then the model's output."""
    sep = subset.get("caption_separator") or ","
    trigger = subset.trigger_word
    prefix_tags = split_tags(prefix, sep) if prefix else []
    parts = dedupe([*([trigger] if trigger else []), *existing, *prefix_tags, *output])
    return join_tags(parts, sep)


def new_text(subset: Subset, record: ImageRecord, output: Sequence[str], mode: str, prefix: str = "") -> Change | None:
    """The change that writes ``output`` as ``record``'s caption in ``mode`` (None: nothing changes)."""
    if not any(o.strip() for o in output) and not subset.trigger_word and not prefix.strip():
        return None
    target = caption_target(subset, record)
    if record.caption is None or not record.caption.raw.strip():
        before = None if record.caption is None else ("\ufeff" if record.caption.had_bom else "") + record.caption.raw
        line = caption_line(subset, output, prefix)
        return Change(target, before, line + "\n") if line else None
    raw = record.caption.raw
    before = ("\ufeff" if record.caption.had_bom else "") + raw
    sep = subset.get("caption_separator") or ","

    def change(first: str) -> str:
        existing = split_tags(first, sep) if mode == "append" else []
        return caption_line(subset, output, prefix, existing)

    after = map_caption_lines(raw, False, change)
    return None if after == before else Change(target, before, after)

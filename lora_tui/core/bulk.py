"""Bulk caption edits as previews: compute every before/after first, apply through the journal.

Each operation is a pure function over the captions' live lines (the first line, or every line with
``enable_wildcard``), splitting and joining tags on the subset's ``caption_separator``. Nothing is
written until :meth:`Preview.apply`, which goes through :class:`~lora_tui.core.journal.Journal` so it
can be undone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core.captions import join_tags, map_caption_lines, split_tags
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Change, Journal, Outcome
from lora_tui.core.metadata_edit import MetaEdits
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord, caption_target, fill_sizes, load_caption

Target = tuple[Subset, ImageRecord]
TagFn = Callable[[list[str], Subset], list[str]]
LineFn = Callable[[str, Subset], str]


@dataclass(frozen=True)
class Preview:
    """What an operation would change; ``skipped`` lists captions it could not touch and why."""

    label: str
    changes: tuple[Change, ...]
    skipped: tuple[str, ...] = ()
    # fine-tuning entries (image, before, after): their metadata files are whole-file changes above
    entries: tuple[tuple[str, str, str], ...] = ()
    meta_files: frozenset[Path] = frozenset()

    def __len__(self) -> int:
        return len(self.changes)

    def apply(self, journal: Journal, *, wait: float | None = None) -> Outcome | None:
        """Write the changes through the journal; captions changed since the preview are left alone."""
        return journal.apply(self.label, self.changes, wait=wait)

    def render(self, limit: int = 20) -> str:
        """Human-readable diff: path, then - before / + after for the first ``limit`` files."""
        files = [c for c in self.changes if c.path not in self.meta_files]
        lines = [f"{self.label}: {len(files)} caption files change"]
        if self.entries:
            lines[0] += f", {len(self.entries)} captions in {len(self.meta_files)} metadata files"
        shown = [(str(c.path), _first_line(c.before, "(no file)"), _first_line(c.after, "(deleted)")) for c in files]
        shown += [(image, _first_line(b, ""), _first_line(a, "")) for image, b, a in self.entries]
        for where, before, after in shown[:limit]:
            lines += [f"  {where}", f"    - {before}", f"    + {after}"]
        if len(shown) > limit:
            lines.append(f"  … and {len(shown) - limit} more")
        for why in self.skipped[:limit]:
            lines.append(f"  skipped {why}")
        return "\n".join(lines)


def _first_line(text: str | None, missing: str) -> str:
    if text is None:
        return missing
    return text.lstrip("\ufeff").splitlines()[0] if text.strip() else "(empty)"


def _preview(label: str, targets: Iterable[Target], line_fn: LineFn, *, create_missing: bool = False) -> Preview:
    """Run ``line_fn`` over every target's live caption lines and collect what would change.

    A caption that would become blank is deleted instead (sd-scripts stops on an empty caption
    file; without one it falls back to class_tokens). Images sharing one sidecar (sd-scripts'
    face-crop naming) change it once.
    """
    changes: list[Change] = []
    skipped: list[str] = []
    meta = MetaEdits(skipped)
    seen: set[str] = set()
    wildcards: dict[int, bool] = {}  # per subset: resolving a setting costs more than editing a caption
    folders: dict[str, Path] = {}
    for subset, record in targets:
        if record.caption_pending:  # listed but not read yet: an edit must start from the real text
            load_caption(record)
        if record.meta_key is not None:
            wildcard = bool(subset.get("enable_wildcard"))
            meta.add(subset, record, lambda line, s=subset: line_fn(line, s), wildcard)
            continue
        if record.caption_error:
            skipped.append(record.caption_error)
            continue
        if record.caption_name is not None:  # the sidecar that exists; a Path per folder, not per file
            key = os.path.join(record.folder, record.caption_name)
            if key in seen:
                continue
            folder = folders.get(record.folder)
            if folder is None:
                folder = folders[record.folder] = Path(record.folder)
            target = folder / record.caption_name
        else:
            target = caption_target(subset, record)
            key = str(target)
            if key in seen:
                continue
        wildcard = wildcards.get(id(subset))
        if wildcard is None:
            wildcard = wildcards[id(subset)] = bool(subset.get("enable_wildcard"))

        def change(line: str, subset: Subset = subset) -> str:
            return line_fn(line, subset)

        if record.caption is None:
            if not create_missing:
                continue
            before, after = None, change("").strip()
            if not after:
                continue
            after += "\n"
        else:
            before = ("\ufeff" if record.caption.had_bom else "") + record.caption.raw
            after = map_caption_lines(record.caption.raw, wildcard, change)
            if after == record.caption.raw:
                continue
            if not after.strip():
                after = None  # type: ignore[assignment]
        seen.add(key)
        changes.append(Change(target, before, after))
    changes += meta.changes()
    return Preview(label, tuple(changes), tuple(skipped), tuple(meta.entries), frozenset(meta.docs))


def _on_tags(fn: TagFn) -> LineFn:
    """Lift a tag-list function to a line function using the subset's caption_separator."""

    separators: dict[int, str] = {}

    def line_fn(line: str, subset: Subset) -> str:
        sep = separators.get(id(subset))
        if sep is None:
            sep = separators[id(subset)] = subset.get("caption_separator") or ","
        return join_tags(fn(split_tags(line, sep), subset), sep)

    return line_fn


def _checked_tag(tag: str, targets: Sequence[Target]) -> str:
    """A tag must be one line and must not contain a target subset's separator."""
    tag = tag.strip()
    if not tag:
        raise LoraTuiError("tag is empty", hint="give a non-empty tag")
    if "\n" in tag or "\r" in tag:
        raise LoraTuiError(f"tag {tag!r} contains a line break", hint="a tag is one line of text")
    for sep in {s.get("caption_separator") or "," for s, _ in targets}:
        if sep.strip() and sep.strip() in tag:
            raise LoraTuiError(f"tag {tag!r} contains the caption separator {sep.strip()!r}",
                               hint="add the tags one at a time")
    return tag


def add_tag(targets: Sequence[Target], tag: str, *, position: str = "end",
            create_missing: bool = False) -> Preview:
    """Add ``tag`` to captions that lack it, as the first tag (``front``) or the last (``end``)."""
    tag = _checked_tag(tag, targets)

    def fn(tags: list[str], _: Subset) -> list[str]:
        if tag in tags:
            return tags
        return [tag, *tags] if position == "front" else [*tags, tag]

    return _preview(f"add tag '{tag}' ({position})", targets, _on_tags(fn), create_missing=create_missing)


def remove_tag(targets: Sequence[Target], tag: str) -> Preview:
    tag = _checked_tag(tag, targets)
    return _preview(f"remove tag '{tag}'", targets, _on_tags(lambda tags, _: [t for t in tags if t != tag]))


def rename_tag(targets: Sequence[Target], old: str, new: str) -> Preview:
    """Rename ``old`` to ``new`` in place; where ``new`` is already present the old one is dropped."""
    old, new = _checked_tag(old, targets), _checked_tag(new, targets)

    def fn(tags: list[str], _: Subset) -> list[str]:
        if old not in tags:
            return tags
        out: list[str] = []
        for t in tags:
            t = new if t == old else t
            if t == new and new in out:
                continue
            out.append(t)
        return out

    return _preview(f"rename tag '{old}' → '{new}'", targets, _on_tags(fn))


def prepend_trigger(targets: Sequence[Target], word: str, *, create_missing: bool = False) -> Preview:
    """Make ``word`` the first tag (moving it if it is elsewhere), as keep_tokens = 1 expects."""
    word = _checked_tag(word, targets)

    def fn(tags: list[str], _: Subset) -> list[str]:
        return [word, *(t for t in tags if t != word)]

    return _preview(f"prepend trigger '{word}'", targets, _on_tags(fn), create_missing=create_missing)


def dedupe_tags(targets: Sequence[Target]) -> Preview:
    def fn(tags: list[str], _: Subset) -> list[str]:
        return list(dict.fromkeys(tags))

    return _preview("dedupe tags", targets, _on_tags(fn))


def sort_tags(targets: Sequence[Target]) -> Preview:
    """Sort the tags sd-scripts may shuffle, leaving the fixed ones where they are: the part before
    ``keep_tokens_separator`` (and after a second one) when the caption has it, else the first
    ``keep_tokens`` tags."""

    def line_fn(line: str, subset: Subset) -> str:
        sep = subset.get("caption_separator") or ","
        ksep = subset.get("keep_tokens_separator") or ""
        if ksep and ksep in line:
            head, rest = line.split(ksep, 1)
            middle, tail = rest.split(ksep, 1) if ksep in rest else (rest, None)
            body = join_tags(sorted(split_tags(middle, sep), key=str.casefold), sep)
            out = f"{head.rstrip()} {ksep} {body}"
            return out if tail is None else f"{out} {ksep}{tail}"
        keep = int(subset.get("keep_tokens") or 0)
        tags = split_tags(line, sep)
        return join_tags(tags[:keep] + sorted(tags[keep:], key=str.casefold), sep)

    return _preview("sort tags", targets, line_fn)


def find_replace(targets: Sequence[Target], find: str, replace: str, *, regex: bool = False,
                 ignore_case: bool = False) -> Preview:
    """Literal or regex replace over the live caption lines (not the ignored ones)."""
    if not find:
        raise LoraTuiError("find text is empty", hint="give the text or pattern to replace")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        pattern = re.compile(find if regex else re.escape(find), flags)
        # validate group references in the replacement once, up front
        pattern.sub(replace if regex else replace.replace("\\", "\\\\"), "")
    except re.error as exc:
        raise LoraTuiError(f"invalid regular expression: {exc}", hint="check the pattern") from None
    repl = replace if regex else replace.replace("\\", "\\\\")
    kind = "regex" if regex else "text"
    return _preview(f"replace {kind} '{find}' → '{replace}'", targets, lambda line, _: pattern.sub(repl, line))


def select_targets(scans: Sequence, names: Sequence[str] = (), include_reg: bool = False) -> list[Target]:
    """Records to edit: the named subsets (by name or ``D.S`` index), else every training subset."""
    chosen = []
    for scan in scans:
        sub = scan.subset
        if names:
            if sub.name not in names and f"{sub.dataset_index}.{sub.index}" not in names:
                continue
        elif sub.is_reg and not include_reg:
            continue
        chosen.append(scan)
    if names:
        found = {s.subset.name for s in chosen} | {f"{s.subset.dataset_index}.{s.subset.index}" for s in chosen}
        unknown = [n for n in names if n not in found]
        if unknown:
            raise LoraTuiError(f"no subset named {unknown[0]!r}",
                               hint="use a subset name or its index like 0.1 (see lora-tui steps)")
    return [(scan.subset, record) for scan in chosen for record in scan.records]


def readable_targets(targets: Sequence[Target]) -> tuple[list[Target], list[Target]]:
    """(images, files that are not readable images): an empty, headerless or cut-short file is no
    training image, so its caption is neither counted nor edited, and none is created for it.
    Reads each image's header and tail (fine-tuning metadata entries are kept as listed)."""
    fill_sizes(record for _, record in targets if record.meta_caption is None)
    kept: list[Target] = []
    dropped: list[Target] = []
    for target in targets:
        (dropped if target[1].unreadable else kept).append(target)
    return kept, dropped


def tag_counts(targets: Sequence[Target]) -> dict[str, int]:
    """How many captions carry each tag (each caption counted once per tag), most common first."""
    counts: dict[str, int] = {}
    for subset, record in targets:
        text = record.text(bool(subset.get("enable_wildcard")))
        if not text:
            continue
        sep = subset.get("caption_separator") or ","
        for tag in {t for line in text.split("\n") for t in split_tags(line, sep)}:
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

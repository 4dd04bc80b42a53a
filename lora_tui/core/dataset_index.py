"""A flat, filterable index of every image in a project, for browsing and review.

The UI's image list renders rows of this index; filtering and sorting happen here (plain Python,
testable), never in widgets. Built from a scan in one pass; 10,000 rows filter in milliseconds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lora_tui.core.captions import find_caption, split_tags
from lora_tui.core.clip_tokens import estimate_tokens
from lora_tui.core.images import IMAGE_EXTENSIONS
from lora_tui.core.project import Subset
from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks
from lora_tui.core.scan import ImageRecord, SubsetScan, load_caption, scan_subset


@dataclass
class Row:
    """One image as the list shows it; ``key`` is its review-marks key, computed once."""

    subset: Subset
    record: ImageRecord
    key: str = ""
    _tokens: int | None = None

    @property
    def tokens(self) -> int:
        """Estimated CLIP tokens of the trained text (cached; computed only for rows that are shown)."""
        if self.record.caption_pending:
            return 0  # not read yet: counted once the caption is in
        if self._tokens is None:
            self._tokens = max((estimate_tokens(line) for line in self.text.split("\n")), default=0)
        return self._tokens

    def forget_text(self) -> None:
        self._tokens = None

    @property
    def caption_state(self) -> str:
        """"ok", "missing" (no sidecar), "class" (no sidecar, class_tokens used), "empty", "error",
        or "pending" (a sidecar not read yet)."""
        r = self.record
        if r.caption_pending:
            return "pending"
        if r.caption_error:
            return "error"
        if r.meta_caption is not None:
            return "ok" if r.meta_caption.strip() else "empty"
        if r.caption is None:
            return "class" if self.subset.get("class_tokens") else "missing"
        return "ok" if r.caption.effective(self.wildcard) else "empty"

    @property
    def wildcard(self) -> bool:
        return bool(self.subset.get("enable_wildcard"))

    @property
    def text(self) -> str:
        """The caption text sd-scripts trains on (or the class tokens it falls back to)."""
        if self.record.caption_pending:
            return ""
        text = self.record.text(self.wildcard)
        if text is None:
            return str(self.subset.get("class_tokens") or "")
        return text

    @property
    def tags(self) -> list[str]:
        sep = self.subset.get("caption_separator") or ","
        return [t for line in self.text.split("\n") for t in split_tags(line, sep)]


@dataclass(frozen=True)
class Filter:
    """What the list shows: a subset, a tag, free text, and a review state."""

    subset: str | None = None  # "D.S" index
    tag: str | None = None
    text: str = ""
    state: str | None = None  # "needs-review", "unreviewed", "reviewed", "flagged", "excluded", "uncaptioned"
    order: str = "project"  # "project", "name", "caption", "tokens"


ORDERS = ("project", "name", "caption", "tokens")


@dataclass
class Refreshed:
    """What :meth:`DatasetIndex.refresh` changed: rows re-read, and whether the view was rebuilt."""

    rows: list[Row] = field(default_factory=list)
    view_changed: bool = False
    tags_changed: bool = False  # a tag appeared or disappeared (completion needs rebuilding)
    tags: set[str] = field(default_factory=set)  # tags whose count may have changed


class DatasetIndex:
    """All rows of a project plus the current filtered view."""

    def __init__(self, scans: Sequence[SubsetScan], marks: ReviewMarks) -> None:
        self.marks = marks
        self.scans = list(scans)
        self.rows = self._rows_of(self.scans)
        self.filter = Filter()
        self.view: list[Row] = list(self.rows)
        self._by_path: dict[str, Row] | None = None
        self._counts: Counter[str] | None = None  # tag counts over every row, kept current by refresh

    def _rows_of(self, scans: Iterable[SubsetScan]) -> list[Row]:
        """One row per record; the marks key is built per folder (``marks.key(record.path_text)``,
        which is the folder's key plus the file name, costs more than the rest of the row)."""
        key = self.marks.key
        folder_keys: dict[str, str] = {}
        rows = []
        for scan in scans:
            subset = scan.subset
            for record in scan.records:
                folder = record.folder
                base = folder_keys.get(folder)
                if base is None:
                    base = folder_keys[folder] = key(os.path.join(folder, ""))
                rows.append(Row(subset, record, base + record.name))
        return rows

    # -- incremental updates ---------------------------------------------------------------------
    def _paths(self) -> dict[str, Row]:
        """Image and caption paths → row (built once, on the first refresh)."""
        if self._by_path is None:
            out: dict[str, Row] = {}
            for row in self.rows:
                r = row.record
                out[r.path_text] = row
                if r.caption_name is not None:
                    out[os.path.join(r.folder, r.caption_name)] = row
                ext = row.subset.get("caption_extension")
                if ext and r.meta_caption is None:  # where a new sidecar would appear
                    out.setdefault(os.path.splitext(r.path_text)[0] + ext, row)
            self._by_path = out
        return self._by_path

    def refresh(self, paths: Iterable[os.PathLike[str] | str]) -> Refreshed:
        """Re-read only the images and captions at ``paths`` (files written, undone or changed outside).

        Captions are re-read in place; an image added to or removed from a subset folder rescans that
        subset alone. Tag counts and the view follow: the view is rebuilt only when a changed row's
        membership or place in it may have changed.
        """
        lookup = self._paths()
        folders = {str(s.subset.image_dir): s for s in self.scans if s.subset.image_dir is not None}
        metas = {str(m): s for s in self.scans if (m := s.subset.path("metadata_file")) is not None}
        touched: dict[int, Row] = {}
        rescan: dict[int, SubsetScan] = {}
        for raw in paths:
            path = os.fspath(raw)
            if path in metas:  # a fine-tuning caption edit (or undo) rewrote its metadata file
                rescan[id(metas[path])] = metas[path]
                continue
            row = lookup.get(path)
            if row is not None and (os.path.exists(row.record.path_text)):
                touched[id(row)] = row
                continue
            scan = folders.get(os.path.dirname(path))
            if scan is not None and (row is not None or os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS):
                rescan[id(scan)] = scan  # an image came or went
        out = Refreshed()
        counts = self._counts
        for row in touched.values():
            old = set(row.tags) if counts is not None else set()
            _reread(row)
            out.rows.append(row)
            if counts is not None:
                new = set(row.tags)
                out.tags |= old ^ new
                counts.subtract(old - new)
                counts.update(new - old)
                out.tags_changed |= any(counts[t] <= 0 for t in old - new) or any(counts[t] == 1 for t in new - old)
        if counts is not None:
            for tag in [t for t, n in counts.items() if n <= 0]:
                del counts[tag]
        if rescan:
            self._rescan_subsets(list(rescan.values()))
            out.view_changed = out.tags_changed = True
            return out
        if out.rows and self._view_may_change(out.rows):
            self.apply(self.filter)
            out.view_changed = True
        return out

    def _rescan_subsets(self, scans: list[SubsetScan]) -> None:
        for old in scans:
            i = next(i for i, s in enumerate(self.scans) if s is old)
            self.scans[i] = scan_subset(old.subset)
        self.rows = self._rows_of(self.scans)
        self._by_path = None
        self._counts = None
        self.apply(self.filter)

    def _view_may_change(self, rows: list[Row]) -> bool:
        flt = self.filter
        if flt.order in ("caption", "tokens"):
            return True
        if flt.tag is None and not flt.text and flt.state != "uncaptioned":
            return False  # subset and review filters do not depend on caption text
        shown = {id(r) for r in self.view}
        return any((id(r) in shown) != self._matches(r, flt) for r in rows)

    def apply(self, flt: Filter) -> list[Row]:
        """Set the filter and return the rows it keeps, in project order (the "unreviewed" review
        filter lists the images marked needs-review first)."""
        self.filter = flt
        text = flt.text.casefold()
        out = [row for row in self.rows if self._matches(row, flt, text)]
        if flt.order == "name":
            out.sort(key=lambda r: r.record.name.casefold())
        elif flt.order == "caption":
            out.sort(key=lambda r: r.text.casefold())
        elif flt.order == "tokens":
            out.sort(key=lambda r: -r.tokens)
        elif flt.state == "unreviewed":  # what a model captioned comes first: it is what needs eyes
            needs = self.marks.with_mark(NEEDS_REVIEW)
            out.sort(key=lambda r: not (r.key in needs and self._has_caption(r)))
        self.view = out
        return out

    def _matches(self, row: Row, flt: Filter, text: str | None = None) -> bool:
        text = flt.text.casefold() if text is None else text
        sub = row.subset
        if flt.subset is not None and f"{sub.dataset_index}.{sub.index}" != flt.subset:
            return False
        if flt.tag is not None and flt.tag not in row.tags:
            return False
        if text and text not in row.text.casefold() and text not in row.record.name.casefold():
            return False
        return not (flt.state and not self._state_matches(row, flt.state))

    @staticmethod
    def _has_caption(row: Row) -> bool:
        """A needs-review mark counts only while there is a caption to review (an undo may take it away)."""
        return row.caption_state not in ("missing", "class")

    def _state_matches(self, row: Row, state: str) -> bool:
        if state == NEEDS_REVIEW:
            return self.marks.has(row.key, state) and self._has_caption(row)
        if state == "unreviewed":
            return not self.marks.has(row.key, "reviewed")
        if state == "uncaptioned":
            return row.caption_state in ("missing", "class", "empty", "error")
        return self.marks.has(row.key, state)

    def tag_counts(self, rows: Sequence[Row] | None = None) -> Counter[str]:
        """Captions per tag over ``rows`` (default: the current view)."""
        rows = self.view if rows is None else rows
        everything = rows is self.rows or (len(rows) == len(self.rows) and rows == self.rows)
        if everything and self._counts is not None:
            return Counter(self._counts)
        counts: Counter[str] = Counter()
        for row in rows:
            counts.update(set(row.tags))
        if everything and not any(r.record.caption_pending for r in rows):
            self._counts = Counter(counts)  # kept current by refresh from now on
        return counts

    def progress(self, rows: Sequence[Row] | None = None) -> tuple[int, int]:
        """(reviewed, total) over ``rows`` (default: the current view)."""
        rows = self.view if rows is None else rows
        reviewed = self.marks.with_mark("reviewed")
        return sum(1 for r in rows if r.key in reviewed), len(rows)


def _reread(row: Row) -> None:
    """Read one image's caption again from disk (it may have appeared, changed or gone)."""
    record = row.record
    if record.meta_caption is not None:
        return  # fine-tuning captions live in the metadata file
    ext = row.subset.get("caption_extension")
    found = find_caption(record.path, ext) if ext else None
    record.caption_name = found.name if found is not None else None
    record.__dict__.pop("caption_path", None)  # drop the cached property
    record.caption = None
    record.caption_error = None
    record.caption_pending = record.caption_name is not None
    load_caption(record)
    row.forget_text()

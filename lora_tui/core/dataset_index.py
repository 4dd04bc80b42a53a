"""A flat, filterable index of every image in a project, for browsing and review.

The UI's image list renders rows of this index; filtering and sorting happen here (plain Python,
testable), never in widgets. Built from a scan in one pass; 10,000 rows filter in milliseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lora_tui.core.captions import split_tags
from lora_tui.core.clip_tokens import estimate_tokens
from lora_tui.core.project import Subset
from lora_tui.core.review import ReviewMarks
from lora_tui.core.scan import ImageRecord, SubsetScan


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


class DatasetIndex:
    """All rows of a project plus the current filtered view."""

    def __init__(self, scans: Sequence[SubsetScan], marks: ReviewMarks) -> None:
        self.marks = marks
        self.rows = [Row(scan.subset, record, marks.key(record.path_text))
                     for scan in scans for record in scan.records]
        self.filter = Filter()
        self.view: list[Row] = list(self.rows)

    def apply(self, flt: Filter) -> list[Row]:
        """Set the filter and return the rows it keeps, in project order."""
        self.filter = flt
        text = flt.text.casefold()
        out = []
        for row in self.rows:
            sub = row.subset
            if flt.subset is not None and f"{sub.dataset_index}.{sub.index}" != flt.subset:
                continue
            if flt.tag is not None and flt.tag not in row.tags:
                continue
            if text and text not in row.text.casefold() and text not in row.record.name.casefold():
                continue
            if flt.state and not self._state_matches(row, flt.state):
                continue
            out.append(row)
        if flt.order == "name":
            out.sort(key=lambda r: r.record.name.casefold())
        elif flt.order == "caption":
            out.sort(key=lambda r: r.text.casefold())
        elif flt.order == "tokens":
            out.sort(key=lambda r: -r.tokens)
        self.view = out
        return out

    def _state_matches(self, row: Row, state: str) -> bool:
        if state == "unreviewed":
            return not self.marks.has(row.key, "reviewed")
        if state == "uncaptioned":
            return row.caption_state in ("missing", "class", "empty", "error")
        return self.marks.has(row.key, state)

    def tag_counts(self, rows: Sequence[Row] | None = None) -> Counter[str]:
        """Captions per tag over ``rows`` (default: the current view)."""
        counts: Counter[str] = Counter()
        for row in self.view if rows is None else rows:
            counts.update(set(row.tags))
        return counts

    def progress(self, rows: Sequence[Row] | None = None) -> tuple[int, int]:
        """(reviewed, total) over ``rows`` (default: the current view)."""
        rows = self.view if rows is None else rows
        reviewed = self.marks.with_mark("reviewed")
        return sum(1 for r in rows if r.key in reviewed), len(rows)

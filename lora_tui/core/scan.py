"""Scanning a project: every subset's images and the captions sd-scripts will read for them.

One ``scandir`` per folder and one read per caption file; image headers are read only when sizes are
asked for (steps math, lint), because listing and caption review do not need them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lora_tui.core import images
from lora_tui.core.captions import CaptionText, decode_caption, find_caption, sidecar_path
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project, Subset


@dataclass
class ImageRecord:
    """One training image and its caption as sd-scripts will see it.

    Paths are kept as folder + names and built on first use: on 10,000 images, constructing Path
    objects up front costs more than reading every caption.
    """

    folder: str
    name: str
    caption_name: str | None
    caption: CaptionText | None = None
    caption_error: str | None = None
    size: tuple[int, int] | None = None
    size_error: str | None = None
    meta_caption: str | None = None  # fine-tuning subsets: caption from the metadata file
    meta_raw: tuple[str | None, str | None] | None = None  # fine-tuning: (caption, tags) as written
    meta_key: str | None = None  # fine-tuning: the entry's key in the metadata file, as written
    caption_pending: bool = False  # a sidecar exists but was not read yet (see load_caption)
    damage: str | None = None  # the header reads but the file is cut short (see fill_sizes)
    checked: bool = False  # fill_sizes has looked at the file
    pixel_note: str | None = None  # trainable, but sd-scripts reads its pixels wrongly (16-bit gray PNG)

    @property
    def unreadable(self) -> str | None:
        """Why this file is not an image anyone can train on (None: it is, or was not checked yet)."""
        return self.size_error or self.damage

    @classmethod
    def at(cls, path: Path, **kw: Any) -> ImageRecord:
        """A record for an image outside a folder scan (fine-tuning metadata), without a sidecar."""
        return cls(str(path.parent), path.name, None, **kw)

    @property
    def path_text(self) -> str:
        """The image path as a string, without building a Path (hot in 10,000-row loops)."""
        return os.path.join(self.folder, self.name)

    @cached_property
    def path(self) -> Path:
        return Path(self.folder, self.name)

    @cached_property
    def caption_path(self) -> Path | None:
        return Path(self.folder, self.caption_name) if self.caption_name is not None else None

    def text(self, wildcard: bool = False) -> str | None:
        if self.meta_caption is not None:
            return self.meta_caption
        return self.caption.effective(wildcard) if self.caption is not None else None


@dataclass
class SubsetScan:
    subset: Subset
    records: list[ImageRecord] = field(default_factory=list)
    error: str | None = None
    names: frozenset[str] = frozenset()
    subdirs: list[str] = field(default_factory=list)
    odd_images: list[str] = field(default_factory=list)


def scan_subset(subset: Subset, *, read_captions: bool = True) -> SubsetScan:
    """List one subset's images and (optionally) read their captions."""
    result = SubsetScan(subset)
    meta = subset.path("metadata_file")
    if meta is not None:
        return _scan_metadata(result, meta)
    folder = subset.image_dir
    if folder is None:
        result.error = "subset has no image_dir"
        return result
    try:
        listing = images.list_folder(folder)
    except LoraTuiError as exc:
        result.error = str(exc)
        return result
    result.names, result.subdirs, result.odd_images = listing.names, listing.subdirs, listing.other_images
    ext = subset.get("caption_extension")
    dirs = frozenset(listing.subdirs)
    names = listing.names
    base = str(folder)
    for name in listing.image_names:
        cap_name: str | None = name[:name.rfind(".")] + ext  # splitext: an image name has its extension
        if cap_name not in names:  # the common case needs no candidate paths
            found = find_caption(folder / name, ext, names)
            cap_name = found.name if found is not None else None
        record = ImageRecord(base, name, cap_name)
        if cap_name is None and dirs and (folder_cap := find_caption(folder / name, ext, dirs)) is not None:
            record.caption_error = (f"{folder_cap}: caption path is a folder, not a file; sd-scripts skips it "
                                    "and trains on class_tokens or an empty caption")
        if cap_name is not None:
            if read_captions:
                load_caption(record)
            else:
                record.caption_pending = True
        result.records.append(record)
    return result


def load_caption(record: ImageRecord) -> None:
    """Read the record's sidecar now; errors land in ``caption_error``, never raise.

    Listing first and reading captions after lets the dataset screen become interactive before
    10,000 captions are read; the current image's caption is read on demand in between.
    """
    record.caption_pending = False
    if record.caption_name is None:
        return
    cap = os.path.join(record.folder, record.caption_name)
    try:
        with open(cap, "rb") as f:
            record.caption = decode_caption(f.read(), cap)
    except IsADirectoryError:
        record.caption_error = f"{cap}: caption path is a folder, not a file"
    except OSError as exc:
        record.caption_error = f"{cap}: cannot read caption: {exc.strerror or exc}"
    except LoraTuiError as exc:
        record.caption_error = str(exc)


class PendingCaptions:
    """Reads a listing-only scan's captions a time slice at a time.

    A UI reads them on its own thread between events: a background thread doing 10,000 small
    reads holds the GIL so often that key presses wait for it (CPython's convoy effect).
    """

    def __init__(self, scans: Iterable[SubsetScan]) -> None:
        self._pending = (r for result in scans for r in result.records if r.caption_pending)
        self.done = False

    def read(self, budget_s: float) -> bool:
        """Read for about ``budget_s`` seconds; True once every caption is in."""
        deadline = time.perf_counter() + budget_s
        for number, record in enumerate(self._pending):
            if record.caption_pending:  # may have been read on demand meanwhile
                load_caption(record)
            if number % 32 == 31 and time.perf_counter() >= deadline:
                return False
        self.done = True
        return True


def load_pending_captions(scans: Iterable[SubsetScan], should_stop: Callable[[], bool] | None = None) -> bool:
    """Read every caption a listing-only scan left pending; False if ``should_stop`` cut it short."""
    for result in scans:
        for number, record in enumerate(result.records):
            if record.caption_pending:
                load_caption(record)
            if should_stop is not None and number % 256 == 0 and should_stop():
                return False
    return True


def _scan_metadata(result: SubsetScan, meta: Path) -> SubsetScan:
    """Fine-tuning subsets list their images in a metadata .json/.jsonl (sd-scripts §1.9)."""
    subset = result.subset
    try:
        text = meta.read_text("utf-8-sig")
        if meta.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            # sd-scripts builds a dict keyed by image_path: a repeated path keeps its last line
            items = list({r.get("image_path", ""): r for r in rows}.items())
        else:
            data = json.loads(text)
            items = list(data.items())
    except (OSError, ValueError, AttributeError) as exc:
        result.error = f"{meta}: cannot read metadata file: {exc}"
        return result
    sep = subset.get("caption_separator") or ","
    for number, (key, row) in enumerate(items, start=1):
        try:
            if not isinstance(row, dict):
                raise TypeError("an entry must be an object with caption/tags/image_size")
            path = Path(str(key))
            if not path.is_absolute():
                if subset.image_dir is None:
                    result.error = f"{meta}: relative image key {key!r} needs image_dir on the subset"
                    return result
                path = subset.image_dir / path
            raw = (row.get("caption"), row.get("tags"))
            caption, tags = str(raw[0] or ""), str(raw[1] or "")
            text_ = caption + sep + tags if caption and tags else caption or tags
            record = ImageRecord.at(path, meta_caption=text_, meta_key=str(key),
                                    meta_raw=(None if raw[0] is None else caption, None if raw[1] is None else tags))
            size = row.get("image_size")
            if isinstance(size, list) and len(size) == 2:
                record.size = (int(size[0]), int(size[1]))
        except (TypeError, ValueError) as exc:
            result.error = f"{meta}: entry {number} ({key!r}) is malformed: {exc}"
            return result
        result.records.append(record)
    return result


def scan_project(project: Project, *, read_captions: bool = True) -> list[SubsetScan]:
    """Scan every subset in project order."""
    return [scan_subset(s, read_captions=read_captions) for s in project.subsets]


def fill_sizes(records: Iterable[ImageRecord]) -> None:
    """Read image sizes from headers where not known yet, and check each file's size and tail.

    A file that is not an image (empty, no known header) gets ``size_error``; one whose header reads
    but which is cut short gets ``damage`` and no size. Either way it has no size, so the steps math,
    staging and the trainer leave it out alike. Sizes from a fine-tuning metadata file are kept.
    """
    for record in records:
        if record.checked or record.size is not None or record.size_error is not None:
            continue
        record.checked = True
        try:
            size, record.pixel_note = images.image_header(record.path)
        except LoraTuiError as exc:
            record.size_error = str(exc)
            continue
        record.damage = images.check_complete(record.path)
        if record.damage is None:
            record.size = size


def caption_target(subset: Subset, record: ImageRecord) -> Path:
    """The file an edit of ``record``'s caption writes: the existing sidecar or a new one (a
    fine-tuning entry: its metadata file)."""
    if record.meta_key is not None and (meta := subset.path("metadata_file")) is not None:
        return meta
    return record.caption_path or sidecar_path(record.path, subset.get("caption_extension"))

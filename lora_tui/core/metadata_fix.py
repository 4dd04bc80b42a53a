"""``fix-keys``: rewrite fine-tuning metadata keys so sd-scripts finds every image.

Keys without an extension (merge_captions_to_metadata.py's default) become the file name with its
extension; with ``absolute`` every key becomes the image's absolute path, which also ends the
replacement of same-named images across subsets (core.metadata_keys). The plan is a preview of
whole-file changes; applying it goes through the caption journal (atomic, compare-and-swap, locked,
undoable), so a file edited between preview and apply is left alone, never overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Change, Journal, Outcome
from lora_tui.core.metadata_doc import MetaDoc
from lora_tui.core.metadata_keys import file_for_key, names_no_file
from lora_tui.core.project import Project
from lora_tui.core.scan import SubsetScan


@dataclass
class FixPlan:
    """Key renames per metadata file, the whole-file changes that make them, and what cannot be fixed."""

    renames: list[tuple[Path, str, str]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def render(self, limit: int = 20) -> str:
        files = len({p for p, _, _ in self.renames})
        lines = [f"fix-keys: {len(self.renames)} keys in {files} metadata files change"]
        for path, old, new in self.renames[:limit]:
            lines.append(f"  {path.name}: {old} → {new}")
        if len(self.renames) > limit:
            lines.append(f"  … and {len(self.renames) - limit} more")
        lines.extend(f"  skipped {why}" for why in self.skipped[:limit])
        return "\n".join(lines)

    def apply(self, journal: Journal, *, wait: float | None = None) -> Outcome | None:
        return journal.apply("fix metadata keys", self.changes, wait=wait)


def plan_fix_keys(project: Project, scans: list[SubsetScan], *, absolute: bool = False) -> FixPlan:
    """The renames that make every key name its file (and, with ``absolute``, an absolute path)."""
    plan = FixPlan()
    done: set[Path] = set()
    for scan in scans:
        meta = scan.subset.path("metadata_file")
        if meta is None or meta in done:
            continue
        done.add(meta)
        if scan.error:
            plan.skipped.append(f"{scan.subset.label}: {scan.error}")
            continue
        try:
            doc = MetaDoc.read(meta)
        except LoraTuiError as exc:
            plan.skipped.append(str(exc))
            continue
        renames = []
        for record in scan.records:
            old = record.meta_key
            if old is None or old not in doc.entries:
                continue
            found = file_for_key(record)
            if found is not None:
                new = os.path.abspath(found) if absolute else old + found.suffix
            elif names_no_file(record):
                plan.skipped.append(f"{meta.name}: key {old!r} names no file (looked for {record.path_text}.*)")
                continue
            elif absolute and not os.path.isabs(old):
                new = os.path.abspath(record.path_text)
            else:
                continue
            renames.append((old, new))
        for old, new in renames:
            try:
                doc.rename(old, new)
            except LoraTuiError as exc:
                plan.skipped.append(str(exc))
                continue
            plan.renames.append((meta, old, new))
        after = doc.dumps()
        if after != doc.text:
            plan.changes.append(Change(meta, doc.text, after))
    return plan

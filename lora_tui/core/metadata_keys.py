"""How sd-scripts keys fine-tuning images, and the two traps that follow from it.

``FineTuningDataset`` registers every image of a dataset in one dict keyed by the metadata key as
written (``f000.png``, or an absolute path). Two subsets of one dataset listing the same key: the
later subset's entry replaces the earlier one, so the earlier image silently never trains. And a
relative key is joined to ``image_dir`` as a path with no extension guessing, so the bare stems
that ``merge_captions_to_metadata.py`` writes by default name no file: sd-scripts stops with
FileNotFoundError unless the latents were cached to disk beforehand. The steps math, lint and the
``fix-keys`` command all read these facts from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core.images import IMAGE_EXTENSIONS
from lora_tui.core.project import Subset
from lora_tui.core.scan import ImageRecord, SubsetScan


@dataclass
class Replacement:
    """Keys of ``loser`` that ``winner`` (a later subset of the same dataset) also lists."""

    loser: Subset
    winner: Subset
    keys: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        return replaced_sentence(self.loser.name, self.winner.name, len(self.keys))


def replaced_sentence(loser: str, winner: str, n: int) -> str:
    """"2 images of subset sub0 are replaced by sub1's entries with the same names and will not train"."""
    plural = n != 1
    return (f"{n} image{'s' if plural else ''} of subset {loser} {'are' if plural else 'is'} replaced by "
            f"{winner}'s entries with the same name{'s' if plural else ''} and will not train")


def registered_scans(scans: list[SubsetScan]) -> list[SubsetScan]:
    """The fine-tuning subsets sd-scripts registers, in order: metadata subsets that read, with
    num_repeats ≥ 1, and not a repeat of an earlier subset's metadata_file (that one is dropped)."""
    seen: set[str] = set()
    out = []
    for scan in scans:
        sub = scan.subset
        meta = sub.values.get("metadata_file")
        if not meta or scan.error or int(sub.get("num_repeats")) < 1 or str(meta) in seen:
            continue
        seen.add(str(meta))
        out.append(scan)
    return out


def replacements(scans: list[SubsetScan]) -> list[Replacement]:
    """Every earlier subset entry a later subset's same key replaces, within one dataset's scans.

    Each key is charged to the subset that finally owns it (the last one listing it), as sd-scripts'
    ``image_data[key] = info`` ends up.
    """
    owner: dict[str, SubsetScan] = {}
    for scan in registered_scans(scans):
        for record in scan.records:
            owner[_key(record)] = scan
    found: dict[tuple[int, int], Replacement] = {}
    for scan in registered_scans(scans):
        for record in scan.records:
            last = owner[_key(record)]
            if last is not scan:
                rep = found.setdefault((scan.subset.index, last.subset.index), Replacement(scan.subset, last.subset))
                rep.keys.append(_key(record))
    return list(found.values())


def _key(record: ImageRecord) -> str:
    return record.meta_key if record.meta_key is not None else record.path_text


def names_no_file(record: ImageRecord) -> bool:
    """True when the path sd-scripts builds from this fine-tuning key is not a file."""
    return record.meta_key is not None and not os.path.isfile(record.path_text)


def missing_key_problem(records: list[ImageRecord]) -> str | None:
    """The one-line reason sd-scripts stops on these missing-file keys, or None when all exist."""
    missing = [r for r in records if names_no_file(r)]
    if not missing:
        return None
    first = missing[0]
    stems = [r for r in missing if not os.path.splitext(r.meta_key or "")[1]]
    why = ("keys without a file extension (as merge_captions_to_metadata.py writes them)" if len(stems) == len(missing)
           else "keys that name no file")
    return (f"{len(missing)} fine-tuning metadata {why}: sd-scripts opens {first.path_text} for key "
            f"{first.meta_key!r} and stops with FileNotFoundError (it trains them only from latents cached to "
            "disk beforehand)")


def file_for_key(record: ImageRecord) -> Path | None:
    """The image a key that names no file most likely means: ``<key><ext>`` for an image extension
    sd-scripts loads (the bare stems of merge_captions_to_metadata.py), else None."""
    if not names_no_file(record):
        return None
    base = Path(record.path_text)
    for ext in sorted(IMAGE_EXTENSIONS):
        candidate = base.with_name(base.name + ext)
        if candidate.is_file():
            return candidate
    return None


def cached_latents(record: ImageRecord) -> Path | None:
    """The latent cache sd-scripts would load for this entry instead of the image, if it exists:
    ``<key path>_WWWWxHHHH_sd.npz`` (or ``_sdxl``) from the entry's image_size, or a legacy ``.npz``."""
    stem = os.path.splitext(record.path_text)[0]
    names = [stem + ".npz"]
    if record.size is not None:
        w, h = record.size
        names += [f"{stem}_{w:04d}x{h:04d}_sd.npz", f"{stem}_{w:04d}x{h:04d}_sdxl.npz"]
    return next((Path(n) for n in names if os.path.isfile(n)), None)


def drop_replaced(registered: list[tuple[ImageRecord, Subset, int]], entries: dict[int, Any],
                   num_train: int) -> tuple[list[tuple[ImageRecord, Subset, int]], int]:
    """Fine-tuning: sd-scripts keys a dataset's images by metadata key, so a key a later subset lists
    again replaces the earlier entry. Keep the last of each key and charge the others
    to their subsets (``entries``: subset index → core.steps.SubsetSteps), so the counts and the
    breakdown say what really trains."""
    last = {_key(r): i for i, (r, _, _) in enumerate(registered)}
    kept = []
    for i, item in enumerate(registered):
        record, sub, repeats = item
        winner = last[_key(record)]
        if winner == i:
            kept.append(item)
            continue
        entry, by = entries[sub.index], registered[winner][1].name
        entry.replaced_by[by] = entry.replaced_by.get(by, 0) + 1
        entry.images -= 1
        entry.samples -= repeats
        entry.used_samples -= repeats
        num_train -= repeats
    return kept, num_train

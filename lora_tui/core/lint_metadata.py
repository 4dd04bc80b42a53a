"""Lint of fine-tuning (metadata_file) subsets: the two traps sd-scripts springs silently.

Kept apart from core.lint so the caption-file checks stay readable; lint calls :func:`check_keys`
per metadata subset (before its image checks, so a key naming no file is reported once, as what
it is, not as an unreadable image) and :func:`check_replaced` once per project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from lora_tui.core.findings import ERROR, WARNING
from lora_tui.core.metadata_keys import cached_latents, file_for_key, names_no_file, replacements
from lora_tui.core.project import Project
from lora_tui.core.scan import SubsetScan


def _some(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def check_keys(project: Project, scan: SubsetScan, add: Callable[..., None]) -> SubsetScan:
    """Report keys that name no file; return the scan without them for the image checks."""
    sub = scan.subset
    missing = [r for r in scan.records if names_no_file(r)]
    if not missing:
        return scan
    gone = {id(r) for r in missing}
    meta = str(sub.path("metadata_file") or project.file)
    only_cache = ("it trains them only from latents cached to disk beforehand (cache_latents_to_disk with the "
                  ".npz files already there, and image_size in each entry)")
    cached = [r for r in missing if r.size is not None and cached_latents(r) is not None]
    if cached:
        add(WARNING, "metadata-key-cached", f"{sub.label}: {len(cached)} metadata keys name no image file "
            f"({_some([r.meta_key or '' for r in cached])}) but their latents are cached to disk "
            f"({cached_latents(cached[0]).name}); sd-scripts trains them from that cache with "  # type: ignore[union-attr]
            "cache_latents_to_disk, and stops with FileNotFoundError whenever the cache has to be rebuilt", meta,
            f"run: lora-tui metadata {project.root} fix-keys")
        done = {id(r) for r in cached}
        missing = [r for r in missing if id(r) not in done]
    fixable = [r for r in missing if file_for_key(r) is not None]
    if fixable:
        first = fixable[0]
        add(ERROR, "metadata-key-extension", f"{sub.label}: {len(fixable)} metadata keys have no file extension "
            f"({_some([r.meta_key or '' for r in fixable])}), as merge_captions_to_metadata.py writes them; "
            f"sd-scripts opens {first.path_text} and stops with FileNotFoundError; {only_cache}", meta,
            f"run: lora-tui metadata {project.root} fix-keys")
    fixed = {id(r) for r in fixable}
    lost = [r for r in missing if id(r) not in fixed]
    if lost:
        first = lost[0]
        add(ERROR, "metadata-key-missing", f"{sub.label}: {len(lost)} metadata keys name no file "
            f"({_some([r.meta_key or '' for r in lost])}; first looked for at {first.path_text}); sd-scripts "
            f"stops with FileNotFoundError; {only_cache}", meta,
            "fix the keys or the subset's image_dir, or remove those entries")
    return replace(scan, records=[r for r in scan.records if id(r) not in gone])


def check_replaced(project: Project, scans: list[SubsetScan], add: Callable[..., None]) -> None:
    """Keys a later subset of the same dataset lists again: the earlier images never train."""
    for ds in project.datasets:
        if ds.style != "finetune":
            continue
        ds_scans = [s for s in scans if s.subset.dataset_index == ds.index]
        for rep in replacements(ds_scans):
            add(ERROR, "metadata-key-repeated", f"{rep.loser.label} and {rep.winner.label} both list "
                f"{_some(rep.keys)}: sd-scripts keys a dataset's images by metadata key, so "
                f"{rep.sentence()}", str(rep.loser.path("metadata_file") or project.file),
                f"use absolute keys (lora-tui metadata {project.root} fix-keys --absolute), give the images "
                "distinct names, or put the subsets in separate [[datasets]]")

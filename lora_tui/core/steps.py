"""Steps per epoch and total steps, computed the way sd-scripts computes them.

Per dataset: every image goes to its bucket ``num_repeats`` times (regularization images with their
balanced repeat count), each bucket rounds up to whole batches, datasets add up; then
``train_network.py`` divides by processes and gradient accumulation (reference §2.3). The result
carries a human breakdown and a bucket histogram, so the number is never a mystery.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core.buckets import Assignment, BucketPlan
from lora_tui.core.dataset_toml import parse_resolution
from lora_tui.core.metadata_keys import drop_replaced, missing_key_problem, registered_scans, replaced_sentence
from lora_tui.core.project import Dataset, Project, Subset
from lora_tui.core.scan import ImageRecord, SubsetScan, fill_sizes, scan_subset
from lora_tui.core.staging import excluded_paths
from lora_tui.core.train_settings import effective


@dataclass
class SubsetSteps:
    name: str
    is_reg: bool
    images: int
    repeats: int
    samples: int  # images × repeats, before reg balancing
    used_samples: int  # after balancing (equal to samples for training subsets)
    skipped: str | None = None  # why sd-scripts ignores this subset
    # fine-tuning: images of this subset a later subset's same metadata key replaces (subset → count)
    replaced_by: dict[str, int] = field(default_factory=dict)


@dataclass
class DatasetSteps:
    index: int
    resolution: tuple[int, int] | None
    batch_size: int
    subsets: list[SubsetSteps] = field(default_factory=list)
    buckets: Counter[tuple[int, int]] = field(default_factory=Counter)
    batches: int = 0
    unsized: int = 0  # images whose size could not be read (left out; lint reports them)
    unbucketable: list[Path] = field(default_factory=list)  # images whose bucket has a zero side
    held_out: int = 0  # images kept for validation (validation_split)
    excluded: int = 0  # images marked excluded in review (left out of the generated config)
    mean_ar_error: float = 0.0
    missing_keys: str | None = None  # fine-tuning keys naming no file: why sd-scripts stops (metadata_keys)

    @property
    def samples(self) -> int:
        return sum(self.buckets.values())

    @property
    def train_samples(self) -> int:
        return sum(s.samples for s in self.subsets if not s.is_reg and s.skipped is None)

    @property
    def naive_batches(self) -> int:
        return math.ceil(self.samples / self.batch_size) if self.batch_size else 0


@dataclass
class StepsReport:
    datasets: list[DatasetSteps]
    num_processes: int
    grad_accum: int
    max_train_epochs: int | None
    max_train_steps: int
    batches_per_epoch: int  # Σ batches (what sd-scripts calls len(train_dataloader) before prepare)
    batches_per_process: int
    steps_per_epoch: int  # optimizer steps per epoch
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.max_train_steps

    def blocking_problem(self) -> str | None:
        """Why sd-scripts could not build these datasets at all, or None."""
        missing = next((d.missing_keys for d in self.datasets if d.missing_keys), None)
        if missing:
            return missing + "; fix with: lora-tui metadata PROJECT fix-keys"
        if not any(d.train_samples for d in self.datasets):
            return ("nothing to train on: every training subset is empty, unreadable or has num_repeats < 1 "
                    "(sd-scripts stops with 'No data found')")
        bad = [p for d in self.datasets for p in d.unbucketable]
        if bad:
            return (f"{len(bad)} images are smaller than bucket_reso_steps with bucket_no_upscale = true; "
                    f"sd-scripts cannot bucket them (first: {bad[0]})")
        return None

    def summary_line(self) -> str:
        """One line: "27 images × 20 repeats = 540 → 135 steps/epoch at batch 4 × 10 epochs = 1,350 steps"."""
        subs = [s for d in self.datasets for s in d.subsets if s.skipped is None]
        train = [s for s in subs if not s.is_reg]
        samples = sum(d.samples for d in self.datasets)
        if len(train) == 1 and len(subs) == 1:
            lead = f"{_n(train[0].images)} images × {train[0].repeats} repeats = {_n(samples)}"
        else:
            lead = (f"{_n(sum(s.images for s in subs))} images in {len(subs)} subsets "
                    f"= {_n(samples)} samples")
        batches = {d.batch_size for d in self.datasets}
        batch = f"batch {batches.pop()}" if len(batches) == 1 else "per-dataset batch"
        extra = []
        if self.num_processes > 1:
            extra.append(f"{self.num_processes} GPUs")
        if self.grad_accum > 1:
            extra.append(f"grad accum {self.grad_accum}")
        how = f"{batch}" + (" / " + " / ".join(extra) if extra else "")
        if self.max_train_epochs:
            tail = f"× {self.max_train_epochs} epochs = {_n(self.total_steps)} steps"
        else:
            tail = f"max_train_steps = {_n(self.total_steps)} steps (≈ {self.epochs} epochs)"
        return f"{lead} → {_n(self.steps_per_epoch)} steps/epoch at {how} {tail}"

    def breakdown(self) -> str:
        """Multi-line account: per subset, per dataset (bucket rounding shown), then the totals."""
        out = []
        for d in self.datasets:
            reso = f"{d.resolution[0]}×{d.resolution[1]}" if d.resolution else "no resolution"
            out.append(f"dataset {d.index} ({reso}, batch {d.batch_size}):")
            for s in d.subsets:
                label = ("reg " if s.is_reg else "") + s.name
                if s.skipped:
                    out.append(f"  {label:<24} skipped: {s.skipped}")
                    continue
                line = (f"  {label:<24} {_n(s.images):>6} images × {s.repeats:>3} repeats "
                        f"= {_n(s.samples)}")
                if s.is_reg and s.used_samples != s.samples:
                    line += f" → balanced to {_n(s.used_samples)}"
                out.append(line)
                out.extend(f"  ({replaced_sentence(s.name, winner, n)})" for winner, n in s.replaced_by.items())
            if d.missing_keys:
                out.append(f"  ({d.missing_keys}; fix with: lora-tui metadata PROJECT fix-keys)")
            elif d.unsized:
                out.append(f"  ({d.unsized} unreadable images left out; see lora-tui check)")
            if d.excluded:
                out.append(f"  ({d.excluded} images marked excluded are left out)")
            if d.held_out:
                out.append(f"  ({d.held_out} images held out for validation_split; with several buckets "
                           "the per-bucket split is approximate)")
            if d.unbucketable:
                out.append(f"  ({len(d.unbucketable)} images smaller than one bucket step left out: "
                           "sd-scripts cannot bucket them; see lora-tui check)")
            rounding = d.batches - d.naive_batches
            note = f" (per-bucket rounding adds {rounding})" if rounding > 0 else ""
            out.append(f"  = {_n(d.samples)} samples in {len(d.buckets)} buckets → "
                       f"{_n(d.batches)} batches{note}")
        per = f"{_n(self.batches_per_epoch)} batches/epoch"
        if self.num_processes > 1:
            per += f" ÷ {self.num_processes} GPUs = {_n(self.batches_per_process)} per GPU"
        if self.grad_accum > 1:
            per += f" ÷ grad accum {self.grad_accum}"
        per += f" = {_n(self.steps_per_epoch)} steps/epoch"
        if self.max_train_epochs:
            per += f" × {self.max_train_epochs} epochs = {_n(self.total_steps)} steps"
        else:
            per += f"; max_train_steps {_n(self.total_steps)} → {self.epochs} epochs"
        out.append(per)
        return "\n".join(out)

    def histogram(self, width: int = 30) -> str:
        """Bucket histogram (samples per bucket, with repeats), one bar per bucket."""
        lines = []
        for d in self.datasets:
            if not d.buckets:
                continue
            top = max(d.buckets.values())
            lines.append(f"dataset {d.index} buckets (samples incl. repeats):")
            for (w, h), count in sorted(d.buckets.items()):
                bar = "█" * max(1, round(count / top * width))
                batches = math.ceil(count / d.batch_size)
                lines.append(f"  {w:>5}×{h:<5} {bar:<{width}} {_n(count):>7}  ({batches} batches)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "batches_per_epoch": self.batches_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "epochs": self.epochs,
            "num_processes": self.num_processes,
            "gradient_accumulation_steps": self.grad_accum,
            "datasets": [
                {"index": d.index, "resolution": list(d.resolution) if d.resolution else None,
                 "batch_size": d.batch_size, "samples": d.samples, "batches": d.batches,
                 "buckets": {f"{w}x{h}": c for (w, h), c in sorted(d.buckets.items())},
                 "subsets": [s.__dict__ for s in d.subsets]}
                for d in self.datasets
            ],
        }


def _n(value: int) -> str:
    return f"{value:,}"


@dataclass
class Registered:
    """One image as sd-scripts registers it: its subset, repeats (reg images: balanced) and bucket."""

    record: ImageRecord
    subset: Subset
    repeats: int
    assignment: Assignment


def dataset_steps(dataset: Dataset, scans: list[SubsetScan], excluded: set[Path] | None = None) -> DatasetSteps:
    """Buckets and batches for one dataset from its subsets' scans (sizes read as needed)."""
    return register_dataset(dataset, scans, excluded)[0]


def register_dataset(dataset: Dataset, scans: list[SubsetScan], excluded: set[Path] | None = None, *,
                     split_seed: int | None = None) -> tuple[DatasetSteps, list[Registered]]:
    """The images sd-scripts trains on for one dataset, each with its bucket, plus the steps summary.

    Shared by the steps math and the built-in trainer, so both count exactly the same samples.
    ``split_seed`` makes ``validation_split`` pick the held-out images from a seeded shuffle, as the
    trainer does; without it the last images are held out (same counts, approximate buckets).
    """
    reso = parse_resolution(dataset.get("resolution"))
    result = DatasetSteps(dataset.index, reso, int(dataset.get("batch_size")))
    plan = None
    if reso is not None:
        plan = BucketPlan(reso, enable_bucket=bool(dataset.get("enable_bucket")),
                          min_bucket_reso=int(dataset.get("min_bucket_reso")),
                          max_bucket_reso=int(dataset.get("max_bucket_reso")),
                          bucket_reso_steps=int(dataset.get("bucket_reso_steps")),
                          bucket_no_upscale=bool(dataset.get("bucket_no_upscale")))
    registered: list[tuple[ImageRecord, Subset, int]] = []
    reg: list[tuple[ImageRecord, SubsetSteps, int, Subset]] = []
    split = float(dataset.get("validation_split") or 0.0)
    seen_dirs: set[str] = set()
    num_train = 0
    for scan in scans:
        sub = scan.subset
        repeats = int(sub.get("num_repeats"))
        fill_sizes(scan.records)
        kept = [r for r in scan.records if not excluded or r.path not in excluded]
        result.excluded += len(scan.records) - len(kept)
        usable = [r for r in kept if r.size is not None]
        result.unsized += len(kept) - len(usable)
        held_out = 0
        if 0.0 < split < 1.0 and not sub.is_reg and dataset.style == "dreambooth":
            # sd-scripts keeps ceil(n × (1 − split)) images of a shuffled order for training; which
            # ones is random, so with several buckets the per-bucket split is an approximation.
            keep = math.ceil(len(usable) * (1.0 - split))
            if split_seed is not None:
                usable = list(usable)
                random.Random(split_seed).shuffle(usable)
            held_out, usable = len(usable) - keep, usable[:keep]
            result.held_out += held_out
        entry = SubsetSteps(sub.name, sub.is_reg, len(usable), repeats, len(usable) * repeats, 0)
        result.subsets.append(entry)
        key = str(sub.values.get("metadata_file") or sub.image_dir)
        if repeats < 1:
            entry.skipped = f"num_repeats {repeats} < 1"
        elif key in seen_dirs:
            entry.skipped = "duplicate of an earlier subset in this dataset"
        elif scan.error:
            entry.skipped = scan.error
        elif not usable:
            entry.skipped = "no images"
        if entry.skipped:
            entry.samples = 0
            continue
        seen_dirs.add(key)
        if sub.is_reg:
            reg.extend((r, entry, repeats, sub) for r in usable)
        else:
            num_train += entry.samples
            entry.used_samples = entry.samples
            registered.extend((r, sub, repeats) for r in usable)
    if dataset.style == "finetune":
        entries = {scan.subset.index: entry for scan, entry in zip(scans, result.subsets)}
        registered, num_train = drop_replaced(registered, entries, num_train)
        result.missing_keys = missing_key_problem([r for s in registered_scans(scans) for r in s.records
                                                   if r.size is None and (not excluded or r.path not in excluded)])
    registered.extend(_balance_reg(reg, num_train))
    if plan is None:
        return result, []
    errors = []
    out = []
    for record, sub, repeats in registered:
        assert record.size is not None
        assign = plan.select(*record.size)
        if 0 in assign.bucket:  # bucket_no_upscale with an image under one bucket step: sd-scripts fails
            result.unbucketable.append(record.path)
            continue
        result.buckets[assign.bucket] += repeats
        errors.append(abs(assign.ar_error))
        out.append(Registered(record, sub, repeats, assign))
    result.mean_ar_error = sum(errors) / len(errors) if errors else 0.0
    if result.batch_size > 0:
        result.batches = sum(math.ceil(c / result.batch_size) for c in result.buckets.values())
    return result, out


def _balance_reg(reg: list[tuple[ImageRecord, SubsetSteps, int, Subset]],
                 num_train: int) -> list[tuple[ImageRecord, Subset, int]]:
    """sd-scripts' regularization balancing, in closed form.

    sd-scripts walks the reg images in order, each with its own repeats, until they match the
    training samples; if one pass is not enough it adds one repeat per image round-robin until they
    do. Its loop takes one turn per sample (1e8 repeats: minutes); the same counts come from the
    prefix sums here: the first k images when their repeats reach ``num_train``, else every image
    with ``(num_train − Σ own) // n`` extra repeats and one more for the first remainder.
    """
    if not reg or num_train <= 0:
        return []
    own = [count for _, _, count, _ in reg]
    prefix = list(itertools.accumulate(own))
    if prefix[-1] >= num_train:
        used = bisect.bisect_left(prefix, num_train) + 1
        reg, repeats = reg[:used], own[:used]
    else:
        full, rest = divmod(num_train - prefix[-1], len(reg))
        repeats = [count + full + (1 if i < rest else 0) for i, count in enumerate(own)]
    out = []
    for (record, entry, _, sub), count in zip(reg, repeats):
        entry.used_samples += count
        out.append((record, sub, count))
    return out


def compute(project: Project, scans: list[SubsetScan] | None = None) -> StepsReport:
    """The full steps report for a project, optionally reusing scans already made."""
    excluded = excluded_paths(project)
    scan_by_subset = {}
    if scans is not None:
        scan_by_subset = {(s.subset.dataset_index, s.subset.index): s for s in scans}
    datasets = []
    for ds in project.datasets:
        ds_scans = [scan_by_subset.get((ds.index, s.index)) or scan_subset(s, read_captions=False)
                    for s in ds.subsets]
        datasets.append(dataset_steps(ds, ds_scans, excluded))
    args = project.args
    return steps_from_batches(
        datasets,
        num_processes=int(project.launch.get("num_processes", 1)),
        grad_accum=int(effective(args, "gradient_accumulation_steps")),
        max_train_epochs=args.get("max_train_epochs"),
        max_train_steps=args.get("max_train_steps"),
    )


@dataclass(frozen=True)
class TrainLength:
    """How long a run is: what train_network.py derives from the batches of one epoch."""

    batches_per_process: int
    steps_per_epoch: int  # optimizer steps
    epochs: int
    total_steps: int


def train_length(batches: int, *, num_processes: int = 1, grad_accum: int | None = None,
                 max_train_epochs: int | None = None, max_train_steps: int | None = None) -> TrainLength:
    """train_network.py's arithmetic from Σ batches to optimizer steps and epochs (§2.3).

    The one copy of it: ``lora-tui steps``/``config``, the config screen, ``doctor`` and the built-in
    trainer all call this. Unset values take core.train_settings' defaults (1 process, no gradient
    accumulation, its max_train_steps); max_train_epochs, when set, decides the total.
    """
    grad_accum = int(effective({"gradient_accumulation_steps": grad_accum}, "gradient_accumulation_steps"))
    per_process = math.ceil(batches / num_processes)
    steps_per_epoch = math.ceil(per_process / grad_accum)
    if max_train_epochs:
        total = int(max_train_epochs) * steps_per_epoch  # = ceil(batches / processes / accum) per epoch
    else:
        total = int(effective({"max_train_steps": max_train_steps}, "max_train_steps"))
    epochs = math.ceil(total / steps_per_epoch) if steps_per_epoch else 0
    return TrainLength(per_process, steps_per_epoch, epochs, total)


def steps_from_batches(datasets: list[DatasetSteps], *, num_processes: int = 1, grad_accum: int = 1,
                       max_train_epochs: int | None = None, max_train_steps: int | None = None) -> StepsReport:
    """The steps report from per-dataset batches (see :func:`train_length`)."""
    total_batches = sum(d.batches for d in datasets)
    length = train_length(total_batches, num_processes=num_processes, grad_accum=grad_accum,
                          max_train_epochs=max_train_epochs, max_train_steps=max_train_steps)
    return StepsReport(datasets, num_processes, grad_accum, max_train_epochs or None, length.total_steps,
                       total_batches, length.batches_per_process, length.steps_per_epoch, length.epochs)

"""The built-in trainer's training data, built from the dataset TOML sd-scripts gets.

``build_dataset`` reads the ``--dataset_config`` file and registers images with
``core.steps.register_dataset`` — the code behind the steps math the user saw — so repeats,
skipped subsets, regularization balancing and buckets, and therefore the batches per epoch, are
exactly sd-scripts' and exactly what ``lora-tui check`` reported. Captions are loaded the way
sd-scripts loads them (sidecar, ``class_tokens`` fallback, fine-tuning metadata) and processed
afresh for every step by :mod:`lora_tui.train.data.captions`. Batching lives in ``data_batches``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lora_tui.core import dataset_toml, images
from lora_tui.core.errors import TrainError
from lora_tui.core.project import Dataset as ConfigDataset
from lora_tui.core.project import Subset, datasets_from_config
from lora_tui.core.scan import SubsetScan, fill_sizes, scan_subset
from lora_tui.core.steps import Registered, register_dataset
from lora_tui.train.data.batches import EpochSampler, TrainData, collate_first
from lora_tui.train.data.captions import CaptionOptions, dreambooth_caption, metadata_caption
from lora_tui.train.data.records import BatchKey, CacheStats, DatasetData, ImageEntry, SubsetOptions

__all__ = ["BatchKey", "CacheStats", "DatasetData", "EpochSampler", "ImageEntry", "SubsetOptions", "TrainData",
           "build_dataset", "collate_first", "subset_options"]


def subset_options(subset: Subset) -> SubsetOptions:
    """A subset's per-image options, each resolved subset → dataset → general → args → default."""
    attrs = subset.get("custom_attributes")
    return SubsetOptions(
        label=subset.label,
        caption=CaptionOptions.from_getter(subset.get),
        flip_aug=bool(subset.get("flip_aug")),
        color_aug=bool(subset.get("color_aug")),
        random_crop=bool(subset.get("random_crop")),
        resize_interpolation=subset.get("resize_interpolation"),
        custom_attributes=dict(attrs) if attrs else None,
    )


def _caption(reg: Registered, opts: SubsetOptions, finetune: bool) -> tuple[str, str]:
    """The caption an image starts from, and where it came from."""
    record, sub = reg.record, reg.subset
    wildcard = opts.caption.enable_wildcard
    if finetune:
        raw_caption, raw_tags = record.meta_raw or (record.meta_caption, None)
        return metadata_caption(raw_caption, raw_tags, opts.caption.caption_separator, wildcard), "metadata"
    return dreambooth_caption(record.path, sub.get("caption_extension"), wildcard, sub.get("class_tokens"))


def _check_supported(ds: ConfigDataset, source: Path, warnings: list[str]) -> None:
    """Refuse what the built-in trainer cannot do yet rather than train on something else."""
    if ds.style == "controlnet":
        raise TrainError(f"datasets[{ds.index}]: conditioning_data_dir (masked loss) datasets are not supported by "
                         "the built-in trainer", path=source, hint="use the sd-scripts backend")
    for sub in ds.subsets:
        if sub.get("alpha_mask"):
            raise TrainError(f"{sub.label}: alpha_mask is not supported by the built-in trainer", path=source,
                             hint="remove alpha_mask or use the sd-scripts backend")
        if sub.get("face_crop_aug_range") is not None:
            warnings.append(f"{sub.label}: face_crop_aug_range is ignored by the built-in trainer")


def drop_unreadable(scans: list[SubsetScan]) -> list[tuple[Path, str]]:
    """Images the trainer cannot use, with why: an unreadable header (empty file, not an image) or a
    cut-short file (core.images.check_complete, the tail check `lora-tui check` makes).

    sd-scripts would stop mid-epoch on the first one; they are marked unsized here, so the
    registration (and the steps) leave them out, and the caller names every one of them.
    """
    out = []
    for scan in scans:
        fill_sizes(scan.records)
        for record in scan.records:
            why = record.unreadable  # fill_sizes has checked header and tail of every file it sized
            if why is None and not record.checked:  # sizes from a fine-tuning metadata file: tail unchecked
                why = images.check_complete(record.path)
                if why is not None:
                    record.size, record.damage = None, why
            if why is not None:
                out.append((record.path, why.removeprefix(f"{record.path}: ")))
    return out


def _build_one(ds: ConfigDataset, source: Path, seed: int, warnings: list[str],
               unreadable: list[tuple[Path, str]]) -> DatasetData | None:
    _check_supported(ds, source, warnings)
    scans = [scan_subset(sub, read_captions=False) for sub in ds.subsets]
    unreadable += drop_unreadable(scans)
    split_seed = ds.get("validation_seed")
    steps, registered = register_dataset(ds, scans, split_seed=seed if split_seed is None else int(split_seed))
    for sub_steps in steps.subsets:
        if sub_steps.skipped:
            warnings.append(f"datasets[{ds.index}] subset {sub_steps.name}: ignored ({sub_steps.skipped})")
    if steps.unbucketable:
        raise TrainError(f"{len(steps.unbucketable)} images are smaller than bucket_reso_steps with "
                         f"bucket_no_upscale = true (first: {steps.unbucketable[0]})", path=source,
                         hint="remove those images or set bucket_no_upscale = false")
    if steps.resolution is None:
        if registered or any(s.samples for s in steps.subsets):
            raise TrainError(f"datasets[{ds.index}]: resolution is required", path=source,
                             hint="set resolution in the dataset config or pass --resolution")
        return None
    options: dict[tuple[int, int], SubsetOptions] = {}
    entries: list[ImageEntry] = []
    finetune = ds.style == "finetune"
    for reg in registered:
        sub = reg.subset
        opts = options.get((sub.dataset_index, sub.index))
        if opts is None:
            opts = options[(sub.dataset_index, sub.index)] = subset_options(sub)
        caption, origin = _caption(reg, opts, finetune)
        assert reg.record.size is not None
        entries.append(ImageEntry(key=reg.record.path_text, path=reg.record.path, caption=caption,
                                  caption_source=origin, is_reg=sub.is_reg, repeats=reg.repeats, subset=opts,
                                  size=reg.record.size, bucket=reg.assignment.bucket,
                                  resized=reg.assignment.resized,
                                  enable_bucket=bool(ds.get("enable_bucket"))))
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, entry in enumerate(entries):
        buckets.setdefault(entry.bucket, []).extend([i] * entry.repeats)
    buckets = dict(sorted(buckets.items()))
    return DatasetData(index=ds.index, resolution=steps.resolution, batch_size=steps.batch_size,
                       network_multiplier=float(ds.get("network_multiplier")), entries=entries, buckets=buckets,
                       steps=steps, config=ds, tag_frequency=tag_frequency(ds, scans, steps))


def tag_frequency(ds: ConfigDataset, scans: list[SubsetScan], steps: Any) -> dict[str, dict[str, int]]:
    """sd-scripts' ``dataset.tag_frequency`` (``set_tag_frequency``): per folder (fine-tuning: metadata
    file) name, how often each lower-cased tag occurs in the captions of ALL its images, reg images
    included, before registration; a folder found empty is there with no tags."""
    out: dict[str, dict[str, int]] = {}
    finetune = ds.style == "finetune"
    for scan, sub_steps in zip(scans, steps.subsets):
        if sub_steps.skipped not in (None, "no images"):
            continue
        sub = scan.subset
        key = sub.path("metadata_file") if finetune else sub.image_dir
        if key is None:
            continue
        freq = out.setdefault(key.name, {})
        opts = subset_options(sub).caption
        for record in scan.records:
            if record.size is None:
                continue
            if finetune:
                tags = (record.meta_raw or (None, None))[1]
                if tags is None or (not opts.enable_wildcard and not tags):
                    continue
                text = tags.replace("\n", opts.caption_separator) if opts.enable_wildcard else tags
            else:
                text = dreambooth_caption(record.path, sub.get("caption_extension"), opts.enable_wildcard,
                                          sub.get("class_tokens"))[0]
            for tag in text.split(","):
                tag = tag.strip().lower()
                if tag:
                    freq[tag] = freq.get(tag, 0) + 1
    return out


def build_dataset(dataset_config: Path, *, seed: int, debug_dataset: bool = False,
                  args: Mapping[str, Any] | None = None, prior_loss_weight: float = 1.0,
                  root: Path | None = None, bucket_step_multiple: int = 64) -> TrainData:
    """The training data for a run, from the same file sd-scripts gets as ``--dataset_config``.

    ``args`` are train_network.py-style values the file falls back to (``resolution``,
    ``train_batch_size``, ``enable_bucket``, ``caption_extension``, ...); relative paths resolve
    against ``root`` (default: the working folder, as in sd-scripts); ``bucket_step_multiple`` is what
    bucket_reso_steps must divide by (32 for SDXL, 64 otherwise). Raises :class:`TrainError`
    when nothing is left to train on, naming the file.
    """
    dataset_config = Path(dataset_config)
    config = dataset_toml.load(dataset_config, args=args, bucket_step_multiple=bucket_step_multiple)
    warnings: list[str] = []
    unreadable: list[tuple[Path, str]] = []
    datasets = []
    for ds in datasets_from_config(config, root=root or Path.cwd(), args=args):
        built = _build_one(ds, dataset_config, seed, warnings, unreadable)
        if built is not None and built.buckets:
            datasets.append(built)
    data = TrainData(datasets, seed=seed, source=dataset_config, prior_loss_weight=prior_loss_weight,
                     debug_dataset=debug_dataset, warnings=warnings, unreadable=unreadable)
    if len(data) == 0 or data.num_train_images == 0:
        raise TrainError("no images to train on: every subset is empty, missing or has num_repeats < 1",
                         path=dataset_config, hint="check image_dir paths and num_repeats")
    return data

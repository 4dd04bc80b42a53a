"""Batches of the built-in trainer's training data (built by ``lora_tui.train.data.dataset.build_dataset``).

``TrainData`` is a map-style ``torch.utils.data.Dataset`` whose items are whole batches (sd-scripts style: one bucket
per batch, DataLoader ``batch_size=1``). The batch order and every random choice (flip, crop, colour,
caption) are pure functions of (seed, epoch, position), so any number of workers and a resume
mid-epoch produce the same data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lora_tui.core.errors import TrainError
from lora_tui.train.data import cache as data_cache
from lora_tui.train.data import te_cache
from lora_tui.train.data.captions import process_caption
from lora_tui.train.data.images import prepare_image
from lora_tui.train.data.records import (  # noqa: F401 (the records' old home: importers keep working)
    BatchKey,
    Bucket,
    CacheStats,
    DatasetData,
    ImageEntry,
    SubsetOptions,
)


@dataclass
class _Order:
    refs: list[tuple[int, Bucket, int]]  # (dataset, bucket, batch index) per position
    buckets: list[dict[Bucket, list[int]]] = field(default_factory=list)  # shuffled contents


def collate_first(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: items are already batches (module-level so workers can pickle it)."""
    return examples[0]


class TrainData(Dataset):
    """All datasets of one run as a sequence of ready batches; see the module docstring."""

    def __init__(self, datasets: list[DatasetData], *, seed: int, source: Path, prior_loss_weight: float = 1.0,
                 debug_dataset: bool = False, warnings: list[str] | None = None,
                 unreadable: list[tuple[Path, str]] | None = None) -> None:
        self.datasets = datasets
        self.seed = seed
        self.source = source
        self.prior_loss_weight = prior_loss_weight
        self.debug_dataset = debug_dataset
        self.warnings = warnings or []
        self.unreadable = unreadable or []  # (image, why) left out before registration
        self.epoch = 1
        self.start_position = 0
        self.global_step = 0
        self.max_train_steps = 0
        self.grad_accum = 1
        self._refs = [(di, bucket, b) for di, ds in enumerate(datasets) for bucket, items in ds.buckets.items()
                      for b in range(math.ceil(len(items) / ds.batch_size))]
        self._order: tuple[int, _Order] | None = None

    # --- size and position -------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch: Σ over datasets and buckets of ceil(samples / batch_size)."""
        return len(self._refs)

    @property
    def num_train_images(self) -> int:
        """Training samples with repeats (what sd-scripts prints as ``num train images * repeats``)."""
        return sum(e.repeats for ds in self.datasets for e in ds.entries if not e.is_reg)

    @property
    def num_reg_images(self) -> int:
        """Raw regularization images × repeats, before balancing (sd-scripts' ``num reg images``)."""
        return sum(s.samples for ds in self.datasets for s in ds.steps.subsets if s.is_reg)

    def set_max_train_steps(self, max_train_steps: int, grad_accum: int = 1) -> None:
        """Token warmup needs the run length; call before making the DataLoader (workers copy it)."""
        self.max_train_steps = max_train_steps
        self.grad_accum = max(1, grad_accum)

    def set_epoch(self, epoch: int, *, position: int = 0, global_step: int | None = None) -> None:
        """Start (1-based) ``epoch`` at batch ``position``; the next sampler pass begins there."""
        self.epoch, self.start_position = epoch, position
        if global_step is not None:
            self.global_step = global_step

    def mark_done(self, batch: Mapping[str, Any]) -> None:
        """Record that ``batch`` was trained on, so :meth:`state_dict` resumes after it."""
        self.epoch, self.start_position = int(batch["epoch"]), int(batch["position"]) + 1

    def state_dict(self) -> dict[str, int]:
        """The data position: the order is a pure function of (seed, epoch), so this is all a resume needs."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.start_position, "batches": len(self)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly where :meth:`state_dict` was taken (the saved seed keeps the same order)."""
        self.seed = int(state["seed"])
        epoch, position = int(state["epoch"]), int(state["position"])
        if position >= len(self):
            epoch, position = epoch + 1, 0
        self.set_epoch(epoch, position=position)

    def key_for(self, position: int) -> BatchKey:
        """The key for ``position`` of the current epoch, with its optimizer step (counted from the
        step given to :meth:`set_epoch` at ``start_position``)."""
        done = max(0, position - self.start_position)
        return BatchKey(self.epoch, position, self.global_step + done // self.grad_accum)

    # --- order -----------------------------------------------------------------------------------------
    def order(self, epoch: int) -> _Order:
        """This epoch's batch order and bucket contents: shuffled with Random(seed + epoch), batches
        first, then each bucket's contents (sd-scripts' ``shuffle_buckets``)."""
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        rng = random.Random(self.seed + epoch)
        refs = list(self._refs)
        rng.shuffle(refs)
        buckets = []
        for ds in self.datasets:
            shuffled = {}
            for bucket, items in ds.buckets.items():
                items = list(items)
                rng.shuffle(items)
                shuffled[bucket] = items
            buckets.append(shuffled)
        order = _Order(refs, buckets)
        self._order = (epoch, order)
        return order

    def batch_entries(self, epoch: int, position: int) -> tuple[DatasetData, Bucket, list[ImageEntry]]:
        """Which images make up batch ``position`` of ``epoch``."""
        order = self.order(epoch)
        di, bucket, b = order.refs[position]
        ds = self.datasets[di]
        items = order.buckets[di][bucket][b * ds.batch_size:(b + 1) * ds.batch_size]
        return ds, bucket, [ds.entries[i] for i in items]

    # --- items -----------------------------------------------------------------------------------------
    def __getitem__(self, key: int | BatchKey | tuple[int, ...]) -> dict[str, Any]:
        """One batch: ``images`` (B,3,H,W) in [-1,1] or ``latents`` when cached, fresh ``captions``,
        ``loss_weights`` (prior_loss_weight for reg images), ``is_reg``, ``bucket`` (W, H), ``keys``,
        SDXL's size conditioning per image and ``te_outputs`` when they are cached."""
        key = self.key_for(int(key)) if isinstance(key, int) else BatchKey(*key)
        if not 0 <= key.position < len(self):
            raise IndexError(key.position)
        ds, bucket, entries = self.batch_entries(key.epoch, key.position)
        rng = random.Random(f"{self.seed}:{key.epoch}:{key.position}")
        images, latents, captions, flips, crops, sizes = [], [], [], [], [], []
        for entry in entries:
            sub = entry.subset
            flipped = sub.flip_aug and rng.random() < 0.5
            original, crop = entry.size, entry.crop_ltrb
            if entry.latents is not None:
                lat = entry.latents_flipped if flipped else entry.latents
                assert lat is not None
                latents.append(lat)
            elif entry.npz is not None:
                lat, original, crop = data_cache.load(entry.npz, flipped)
                latents.append(lat)
            else:
                if not entry.enable_bucket:  # sd-scripts' uncached image without buckets: the resolution
                    # and a zero crop (flipped: crop left = the full width, as there); cached latents
                    # keep the bucketed values, as sd-scripts caches through trim_and_resize_if_required
                    original, crop = entry.bucket, (0, 0, 0, 0)
                images.append(prepare_image(entry.path, entry.bucket, entry.resized, random_crop=sub.random_crop,
                                            use_color_aug=sub.color_aug, flip=flipped, rng=rng,
                                            interpolation=sub.resize_interpolation))
            captions.append(process_caption(entry.caption, sub.caption, rng, epoch=key.epoch, step=key.step,
                                            max_train_steps=self.max_train_steps))
            flips.append(flipped)
            left = bucket[0] - crop[2] if flipped else crop[0]
            crops.append((crop[1], left))
            sizes.append((original[1], original[0]))
        if images and latents:
            raise TrainError("some images of a batch have cached latents and some do not",
                             hint="cache latents for the whole dataset")
        return {
            "images": torch.stack(images) if images else None,
            "latents": torch.stack(latents) if latents else None,
            "te_outputs": te_cache.batch_outputs(entries),
            "captions": captions,
            "loss_weights": torch.tensor([self.prior_loss_weight if e.is_reg else 1.0 for e in entries]),
            "is_reg": [e.is_reg for e in entries],
            "network_multipliers": torch.full((len(entries),), float(ds.network_multiplier)),
            "bucket": bucket,
            "keys": [e.key for e in entries],
            "flipped": flips,
            "original_sizes_hw": sizes,
            "crop_top_lefts": crops,
            "target_sizes_hw": [(bucket[1], bucket[0])] * len(entries),
            "custom_attributes": [e.subset.custom_attributes for e in entries],
            "epoch": key.epoch,
            "position": key.position,
            "step": key.step,
        }

    def sampler(self) -> EpochSampler:
        return EpochSampler(self)

    def loader(self, *, num_workers: int = 0, persistent_workers: bool = False) -> DataLoader:
        """A DataLoader over this data (batch_size 1, our sampler); re-iterate it after each
        :meth:`set_epoch`. Persistent workers stay valid because the epoch travels in each key."""
        return DataLoader(self, batch_size=1, sampler=self.sampler(), collate_fn=collate_first,
                          num_workers=num_workers, persistent_workers=persistent_workers and num_workers > 0)

    # --- latents -------------------------------------------------------------------------------------------
    def check_latent_cacheable(self) -> None:
        """sd-scripts refuses to cache latents when augmentation changes pixels every step."""
        for ds in self.datasets:
            for entry in ds.entries:
                if entry.subset.color_aug or entry.subset.random_crop:
                    raise TrainError(f"when caching latents, color_aug and random_crop cannot be used "
                                     f"({entry.subset.label})", path=self.source,
                                     hint="turn them off or turn cache_latents off")

    def cache_latents(self, encode_fn: Any, *, to_disk: bool, batch_size: int = 1,
                      latent_stride: int | None = 8, progress: Any = None) -> CacheStats:
        """Encode every image once (un-augmented, centre-cropped) with ``encode_fn(images) -> latents``.

        Images go in bucket-sorted groups of up to ``batch_size`` (one bucket and flip setting per
        group); with ``flip_aug`` the flipped image is encoded too. ``to_disk`` writes/reuses
        sd-scripts' ``<stem>_<W>x<H>_sd.npz`` files; otherwise latents stay in memory. Latents are
        stored as ``encode_fn`` returns them (sd-scripts caches them before the VAE scaling factor).
        ``progress(done, total)`` is called after each image.
        """
        self.check_latent_cacheable()
        entries = sorted((e for ds in self.datasets for e in ds.entries), key=lambda e: e.bucket[0] * e.bucket[1])
        stats = CacheStats()
        claimed: dict[Path, Bucket] = {}
        pending: list[tuple[ImageEntry, Path | None]] = []
        done = 0

        def flush() -> None:
            nonlocal done
            if not pending:
                return
            group = [e for e, _ in pending]
            images = torch.stack([prepare_image(e.path, e.bucket, e.resized,
                                                interpolation=e.subset.resize_interpolation) for e in group])
            with torch.no_grad():
                lat = encode_fn(images).detach().float().cpu()
                flat = encode_fn(torch.flip(images, dims=[3])).detach().float().cpu() if group[0].subset.flip_aug \
                    else None
            if torch.isnan(lat).any() or (flat is not None and torch.isnan(flat).any()):
                raise TrainError("NaN in encoded latents", path=group[0].path,
                                 hint="use a float32 VAE (no_half_vae) or check the image")
            for i, (entry, target) in enumerate(pending):
                flipped = flat[i].clone() if flat is not None else None
                if target is not None:
                    data_cache.save(target, lat[i], entry.size, entry.crop_ltrb, flipped)
                    entry.npz = target
                else:
                    entry.latents, entry.latents_flipped = lat[i].clone(), flipped
                stats.encoded += 1
                done += 1
                if progress:
                    progress(done, len(entries))
            pending.clear()

        for entry in entries:
            target = None
            if to_disk:
                path = data_cache.npz_path(entry.path, entry.size)
                if claimed.setdefault(path, entry.bucket) == entry.bucket:  # else: another bucket owns the file
                    target = path
                    verdict = data_cache.check(path, entry.path, bucket=entry.bucket,
                                               flip_aug=entry.subset.flip_aug, latent_stride=latent_stride)
                    if verdict == "damaged":
                        stats.damaged.append(path)
                    elif verdict == "ok":
                        entry.npz = path
                        stats.reused += 1
                        done += 1
                        if progress:
                            progress(done, len(entries))
                        continue
            if pending and (pending[0][0].bucket, pending[0][0].subset.flip_aug) != (entry.bucket,
                                                                                     entry.subset.flip_aug):
                flush()
            pending.append((entry, target))
            if len(pending) >= max(1, batch_size):
                flush()
        flush()
        return stats

    # --- reporting -----------------------------------------------------------------------------------------
    def summary(self) -> list[str]:
        """sd-scripts-like startup lines: per dataset, images, buckets with counts, batches."""
        lines = [f"num train images * repeats: {self.num_train_images}", f"num reg images: {self.num_reg_images}",
                 f"num batches per epoch: {len(self)}"]
        for ds in self.datasets:
            lines.append(f"dataset {ds.index}: resolution {ds.resolution}, batch size {ds.batch_size}, "
                         f"{len(ds.entries)} images, {ds.num_batches} batches, "
                         f"mean ar error {ds.steps.mean_ar_error:.4f}")
            for bucket, items in ds.buckets.items():
                lines.append(f"  bucket {bucket[0]}x{bucket[1]}: count {len(items)}")
        return lines + [f"warning: {w}" for w in self.warnings]

    def debug_lines(self, epoch: int = 1, limit: int | None = None) -> Iterator[str]:
        """What ``--debug_dataset`` shows, as text: each batch's bucket, images and processed captions."""
        for position in range(len(self) if limit is None else min(limit, len(self))):
            _, bucket, entries = self.batch_entries(epoch, position)
            rng = random.Random(f"{self.seed}:{epoch}:{position}")
            yield f"epoch {epoch} batch {position + 1}/{len(self)} bucket {bucket[0]}x{bucket[1]}"
            for entry in entries:
                caption = process_caption(entry.caption, entry.subset.caption, rng, epoch=epoch,
                                          max_train_steps=self.max_train_steps)
                yield f"  {'reg ' if entry.is_reg else ''}{entry.key}: {caption}"


class EpochSampler(Sampler[BatchKey]):
    """Yields the current epoch's keys from ``start_position`` on, read from the data when iteration
    starts (in the main process), so workers never need the epoch pushed to them."""

    def __init__(self, data: TrainData) -> None:
        self.data = data

    def __len__(self) -> int:
        return max(0, len(self.data) - self.data.start_position)

    def __iter__(self) -> Iterator[BatchKey]:
        start = self.data.start_position
        for position in range(start, len(self.data)):
            yield self.data.key_for(position)


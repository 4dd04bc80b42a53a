"""What the built-in trainer registers of its datasets: the images, their options and buckets.

Plain records (no behaviour beyond a couple of derived figures), built by
``lora_tui.train.data.dataset.build_dataset`` and consumed by ``batches.TrainData``; kept apart so
the batch logic reads on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from lora_tui.core.steps import DatasetSteps
from lora_tui.train.data.captions import CaptionOptions
from lora_tui.train.data.images import crop_ltrb

Bucket = tuple[int, int]


class BatchKey(NamedTuple):
    """What a sampler hands to ``TrainData.__getitem__``: 1-based epoch, position in that epoch's
    order, and the global optimizer step (for token warmup)."""

    epoch: int
    position: int
    step: int = 0


@dataclass(frozen=True)
class SubsetOptions:
    """The per-image options of one subset, resolved through sd-scripts' fallback chain."""

    label: str
    caption: CaptionOptions
    flip_aug: bool = False
    color_aug: bool = False
    random_crop: bool = False
    resize_interpolation: str | None = None
    custom_attributes: Mapping[str, Any] | None = None


@dataclass
class ImageEntry:
    """One registered image: where it is, its caption before per-step processing, and its bucket."""

    key: str
    path: Path
    caption: str
    caption_source: str  # "file", "class_tokens", "empty" or "metadata"
    is_reg: bool
    repeats: int
    subset: SubsetOptions
    size: tuple[int, int]
    bucket: Bucket
    resized: tuple[int, int]
    latents: torch.Tensor | None = None
    latents_flipped: torch.Tensor | None = None
    npz: Path | None = None
    te_outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # SDXL, cached in memory
    te_npz: Path | None = None  # SDXL, cached on disk (<stem>_te_outputs.npz)
    enable_bucket: bool = True  # the dataset's enable_bucket: SDXL's size conditioning of uncached images

    @property
    def crop_ltrb(self) -> tuple[int, int, int, int]:
        return crop_ltrb(self.bucket, self.size)


@dataclass
class DatasetData:
    """One ``[[datasets]]`` entry: its images and buckets (entry indices, repeated, sorted by size)."""

    index: int
    resolution: Bucket
    batch_size: int
    network_multiplier: float
    entries: list[ImageEntry]
    buckets: dict[Bucket, list[int]]
    steps: DatasetSteps
    # the resolved [[datasets]] entry (core.project.Dataset) and sd-scripts' tag counts of its folders:
    # what the LoRA file's ss_datasets reports, as sd-scripts' dataset objects hold it
    config: Any = None
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def num_batches(self) -> int:
        return sum(math.ceil(len(items) / self.batch_size) for items in self.buckets.values())


@dataclass
class CacheStats:
    encoded: int = 0
    reused: int = 0
    damaged: list[Path] = field(default_factory=list)  # unreadable cache files, encoded again

"""Aspect-ratio buckets exactly as sd-scripts computes them.

``bucket_resolutions`` follows ``model_util.make_bucket_resolutions`` and ``select_bucket`` follows
``BucketManager.select_bucket`` (train_util), including ``bucket_no_upscale``, so every image lands
in the same bucket here as in the trainer, which is what makes the step count exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def bucket_resolutions(max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024,
                       divisible: int = 64) -> list[tuple[int, int]]:
    """Candidate (width, height) buckets for a target area, sorted like sd-scripts sorts them."""
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos: set[tuple[int, int]] = set()
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((side, side))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def rounded_bucket_bounds(min_reso: int, max_reso: int, steps: int) -> tuple[int, int]:
    """sd-scripts rounds min_bucket_reso down and max_bucket_reso up to the step (with a warning)."""
    lo = min_reso - min_reso % steps
    hi = max_reso if max_reso % steps == 0 else max_reso + steps - max_reso % steps
    return lo, hi


@dataclass(frozen=True)
class Assignment:
    """Where one image goes: its bucket, the size it is resized to before cropping, and the
    aspect-ratio error sd-scripts averages into "mean ar error"."""

    bucket: tuple[int, int]
    resized: tuple[int, int]
    ar_error: float


class BucketPlan:
    """Bucket selection for one dataset (one resolution and bucket settings)."""

    def __init__(self, resolution: tuple[int, int], *, enable_bucket: bool = True,
                 min_bucket_reso: int = 256, max_bucket_reso: int = 1024, bucket_reso_steps: int = 64,
                 bucket_no_upscale: bool = False) -> None:
        self.resolution = resolution
        self.enable_bucket = enable_bucket
        self.no_upscale = enable_bucket and bucket_no_upscale
        self.steps = bucket_reso_steps
        self.max_area = resolution[0] * resolution[1]
        if not enable_bucket:
            self.predefined: list[tuple[int, int]] = [resolution]
        elif self.no_upscale:
            self.predefined = []
        else:
            lo, hi = rounded_bucket_bounds(min_bucket_reso, max_bucket_reso, bucket_reso_steps)
            self.predefined = bucket_resolutions(resolution, lo, hi, bucket_reso_steps)
        self._predefined_set = set(self.predefined)
        self._ratios = [w / h for w, h in self.predefined]

    def _round(self, x: float) -> int:
        value = int(x + 0.5)
        return value - value % self.steps

    def select(self, width: int, height: int) -> Assignment:
        """The bucket sd-scripts picks for an image of ``width`` × ``height``."""
        ar = width / height
        if not self.enable_bucket:
            reso = self.resolution
            scale = reso[1] / height if ar > reso[0] / reso[1] else reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
            return Assignment(reso, resized, reso[0] / reso[1] - ar)
        if not self.no_upscale:
            reso = (width, height)
            if reso not in self._predefined_set:
                errors = [abs(r - ar) for r in self._ratios]
                reso = self.predefined[errors.index(min(errors))]
            bucket_ar = reso[0] / reso[1]
            scale = reso[1] / height if ar > bucket_ar else reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
        else:
            if width * height > self.max_area:
                rw = math.sqrt(self.max_area * ar)
                rh = self.max_area / rw
                bw = self._round(rw)
                bh_in_w = self._round(bw / ar)
                ar_w = bw / bh_in_w if bh_in_w else math.inf
                bh = self._round(rh)
                bw_in_h = self._round(bh * ar)
                ar_h = bw_in_h / bh if bh else math.inf
                if abs(ar_w - ar) < abs(ar_h - ar):
                    resized = (bw, int(bw / ar + 0.5))
                else:
                    resized = (int(bh * ar + 0.5), bh)
            else:
                resized = (width, height)
            reso = (resized[0] - resized[0] % self.steps, resized[1] - resized[1] % self.steps)
        return Assignment(reso, resized, reso[0] / reso[1] - ar if reso[1] else math.inf)

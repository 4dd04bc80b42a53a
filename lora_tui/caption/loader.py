"""Images decoded and prepared on worker threads, ahead of the model, delivered in order and in batches.

Pillow releases the GIL while it decodes and resizes, so a few threads keep the next batches ready
while the model runs on the current one: the model never waits on disk for images in the page cache.
A file that cannot be decoded comes back with its error (reported and skipped), never an exception.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PIL import Image, ImageOps

T = TypeVar("T")


@dataclass
class Loaded(Generic[T]):
    """One input: its ``item`` (whatever the caller passed) and the prepared image, or why not."""

    item: T
    data: Any = None
    error: str | None = None


def open_rgb(path: str, draft: int | None = None) -> Image.Image:
    """Decode ``path`` to RGB (transparency onto white, EXIF rotation applied).

    ``draft`` lets JPEG decode at a reduced scale that is still at least that many pixels a side.
    """
    with Image.open(path) as img:
        if draft and img.format == "JPEG":
            img.draft("RGB", (draft, draft))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # no copy when there is nothing to turn
        if img.mode.startswith("I"):  # 16/32-bit grayscale: convert() would clip it to almost white
            return _gray16_to_rgb(img)
        if img.mode in ("RGBA", "LA", "P", "PA"):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB image


def _gray16_to_rgb(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (a scan, a depth map) as 8-bit RGB, scaled rather than clipped, so a
    captioner describes what is in it (lint warns that sd-scripts itself trains on it clipped)."""
    import numpy as np

    values = np.asarray(img).astype(np.float32)
    if img.mode.startswith("I;16") or float(values.max(initial=0)) > 255:
        values *= 255.0 / 65535.0
    return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")


def cores() -> int:
    """CPUs this process may run on (a container's or taskset's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


def default_workers() -> int:
    return max(1, min(4, cores() - 1))


def model_threads(workers: int | None = None) -> int:
    """CPU threads for the model: the cores the loader threads leave, at least one.

    On a 2-core machine a model using both cores and a loader thread decoding beside it fight for
    them (onnxruntime's idle threads even spin): one model thread plus one loader thread finished
    the bench's tagger run in 1.7 s where the default two model threads took 2.9 s (bench/RESULTS.md).
    """
    return max(1, cores() - (workers or default_workers()))


def _inline(prepare: Callable[[T], Any], item: T) -> Future:
    """``prepare(item)`` run here and now, as a finished future (its result or its exception)."""
    future: Future = Future()
    try:
        future.set_result(prepare(item))
    except Exception as exc:
        future.set_exception(exc)
    return future


def batches(items: Sequence[T], prepare: Callable[[T], Any], batch_size: int, *, workers: int | None = None,
            ahead: int = 2, describe: Callable[[T], str] = str) -> Iterator[list[Loaded[T]]]:
    """Yield ``items`` in order, ``batch_size`` at a time, each prepared by ``prepare`` on a worker thread.

    Up to ``ahead`` batches are in flight beyond the one being consumed; items of the batch due next
    that no worker has started yet are prepared by the consumer itself rather than waited for.
    Closing the generator (or an exception in the consumer) cancels what has not started.
    """
    batch_size = max(1, batch_size)
    window = batch_size * max(1, ahead)  # beyond the batch being handed out
    pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="caption-load")
    pending: deque[tuple[T, Future]] = deque()
    feed = iter(items)

    def top_up() -> None:
        while len(pending) < window:
            try:
                item = next(feed)
            except StopIteration:
                return
            pending.append((item, pool.submit(prepare, item)))

    def settle(item: T, future: Future) -> Loaded[T]:
        try:
            return Loaded(item, future.result())
        except Exception as exc:  # a corrupt or unreadable image: reported, the rest go on
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return Loaded(item, error=f"{describe(item)}: cannot read image: {reason}")

    try:
        top_up()
        while pending:
            taken = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            top_up()
            # The consumer would only wait now: it prepares the batch's not-yet-started items itself,
            # from the back (the workers take them from the front). This is the first batch (the
            # model has nothing to do yet) and any batch the workers fell behind on.
            for i in range(len(taken) - 1, -1, -1):
                item, future = taken[i]
                if future.cancel():
                    taken[i] = (item, _inline(prepare, item))
            yield [settle(item, future) for item, future in taken]
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)

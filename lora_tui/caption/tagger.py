"""WD14-style booru taggers: an ONNX model plus its ``selected_tags.csv``, run with onnxruntime.

The model takes square images (padded with white), BGR, 0-255 floats, NHWC as WD14 exports are
(NCHW is recognised from the input's shape), and returns one probability per row of the CSV.
Category 9 rows are ratings (off unless asked), 4 characters (their own threshold), the rest general.
onnxruntime is an optional extra: ``pip install 'lora-tui[tagger]'``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lora_tui.caption.compose import tag_key
from lora_tui.caption.detect import ModelSpec
from lora_tui.caption.loader import open_rgb
from lora_tui.core.errors import ModelError

RATING, CHARACTER = 9, 4
DEFAULT_SIZE = 448
# emoticons whose underscores are the face, not word breaks
KAOMOJI = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                     ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})


@dataclass(frozen=True)
class TagSettings:
    threshold: float = 0.35
    character_threshold: float = 0.85
    exclude: frozenset[str] = field(default_factory=frozenset)
    underscores: bool = False  # keep booru underscores (default: "long hair", not "long_hair")
    ratings: bool = False


@dataclass(frozen=True)
class TagTable:
    names: tuple[str, ...]
    categories: tuple[int, ...]


def read_tags(path: Path) -> TagTable:
    """``selected_tags.csv``: a header with ``name`` and ``category`` columns, one row per output."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        names = tuple(r["name"] for r in rows)
        cats = tuple(int(r.get("category") or 0) for r in rows)
    except (OSError, KeyError, ValueError, TypeError, csv.Error) as exc:
        raise ModelError(f"cannot read the tag list ({type(exc).__name__}: {exc})", path=path,
                         hint="it needs name and category columns, as WD14 taggers ship it") from None
    if not names:
        raise ModelError("the tag list is empty", path=path, hint="use the selected_tags.csv the model came with")
    return TagTable(names, cats)


class TagSelector:
    """The selection rules for one tag list and one set of settings, prepared once for every image.

    A WD14 v3 list has ~10,000 tags: checking each one in Python cost ~0.4 µs a tag per image (4 ms
    an image, a third of a small tagger's forward pass); here the thresholds, the exclusions and the
    spelled-out names are worked out once, and an image's probabilities are compared in one array
    operation, leaving Python only the few tags that pass.
    """

    def __init__(self, table: TagTable, settings: TagSettings) -> None:
        import numpy as np

        excluded = {tag_key(t) for t in settings.exclude}
        cats = np.asarray(table.categories, dtype=np.int64)
        keep = np.array([tag_key(n) not in excluded for n in table.names], dtype=bool)
        self.names = [n if settings.underscores or n in KAOMOJI else n.replace("_", " ") for n in table.names]
        thresholds = np.where(cats == CHARACTER, settings.character_threshold, settings.threshold).astype(np.float64)
        # NaN, not inf, for "never picked as a general tag": no score compares >= NaN, while a broken
        # model's +inf would pass an inf threshold and bring back an excluded tag or a rating
        self.thresholds = np.where(keep & (cats != RATING), thresholds, np.nan)
        self.ratings = np.flatnonzero(keep & (cats == RATING)) if settings.ratings else np.empty(0, np.int64)

    def select(self, probs: Sequence[float]) -> list[str]:
        """Tags over their category's threshold, most confident first (ties in list order); with
        ``ratings``, the likeliest rating tag leads."""
        import numpy as np

        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        if p.shape[0] != self.thresholds.shape[0]:
            raise ModelError(f"the model gave {p.shape[0]} scores but the tag list has {self.thresholds.shape[0]} rows",
                             hint="use the selected_tags.csv that came with this model")
        with np.errstate(invalid="ignore"):
            picked = np.flatnonzero(p >= self.thresholds)  # a NaN score (fp16 overflow) passes nothing
        picked = picked[np.argsort(-p[picked], kind="stable")]
        rating = p[self.ratings]
        known = ~np.isnan(rating)  # argmax would take a NaN for the largest
        lead = [self.names[int(self.ratings[known][int(np.argmax(rating[known]))])]] if known.any() else []
        return lead + [self.names[i] for i in picked.tolist()]


def select_tags(probs: Sequence[float], table: TagTable, settings: TagSettings) -> list[str]:
    """One image's tags (see :class:`TagSelector`, which a run builds once)."""
    return TagSelector(table, settings).select(probs)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("onnxruntime is not installed, and WD14-style taggers need it",
                         hint="pip install 'lora-tui[tagger]' (or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


class Tagger:
    """A loaded tagger: :meth:`prepare` runs on loader threads, :meth:`run` on a batch."""

    def __init__(self, spec: ModelSpec, settings: TagSettings, device: str = "auto", *,
                 cpu_threads: int | None = None) -> None:
        assert spec.onnx_file is not None and spec.tags_csv is not None
        ort = _onnxruntime()
        self.name = spec.name
        self.settings = settings
        self.table = read_tags(spec.tags_csv)
        self.selector = TagSelector(self.table, settings)
        available = ort.get_available_providers()
        want_cuda = device == "auto" or device.startswith("cuda")
        if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise ModelError(f"--device {device}: onnxruntime here has no CUDA provider",
                             hint="pip install onnxruntime-gpu, or use --device cpu")
        providers = (["CUDAExecutionProvider"] if want_cuda and "CUDAExecutionProvider" in available else [])
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if cpu_threads:  # the cores the loader threads leave; idle threads sleep instead of spinning
            options.intra_op_num_threads = cpu_threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(spec.onnx_file), options, providers=providers)
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load the tagger: {exc}", path=spec.onnx_file,
                             hint="re-download the model") from None
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        self.nchw = len(shape) == 4 and shape[1] == 3 and shape[-1] != 3
        dim = shape[2] if self.nchw else shape[1] if len(shape) == 4 else None
        self.size = dim if isinstance(dim, int) and dim > 0 else DEFAULT_SIZE
        self.one_at_a_time = isinstance(shape[0], int) and shape[0] == 1
        outputs = self.session.get_outputs()[0].shape
        if isinstance(outputs[-1], int) and outputs[-1] != len(self.table.names):
            raise ModelError(f"the model has {outputs[-1]} outputs but the tag list {len(self.table.names)} rows",
                             path=spec.tags_csv, hint="use the selected_tags.csv that came with this model")
        self.forward_s = 0.0

    def prepare(self, path: str) -> Any:
        """Fit inside the model's square, centred on white, as uint8 RGB (on a loader thread).

        A JPEG at least twice the model's side decodes at a reduced scale (in the DCT, far cheaper
        than decoding it whole); resizing before padding touches only the image's own pixels; the
        channel swap and the float conversion happen once per batch in :meth:`run`.
        """
        import numpy as np

        img = open_rgb(path, draft=self.size)
        scale = self.size / max(img.size)
        if scale != 1.0:
            fit = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(fit, Image.Resampling.BICUBIC)
        if img.size != (self.size, self.size):
            square = Image.new("RGB", (self.size, self.size), (255, 255, 255))
            square.paste(img, ((self.size - img.width) // 2, (self.size - img.height) // 2))
            img = square
        return np.asarray(img)  # RGB uint8; :meth:`_batch` turns it to BGR floats in its one copy

    def _batch(self, inputs: Sequence[Any]) -> Any:
        """One float32 batch, BGR as WD14 expects, 0-255, in the model's layout: each image is
        read once, its channels reversed and widened on the way into the batch."""
        import numpy as np

        first = inputs[0]
        if self.nchw:
            x = np.empty((len(inputs), 3, *first.shape[:2]), np.float32)
            for i, image in enumerate(inputs):
                x[i] = image[..., ::-1].transpose(2, 0, 1)
        else:
            x = np.empty((len(inputs), *first.shape), np.float32)
            for i, image in enumerate(inputs):
                x[i] = image[..., ::-1]
        return x

    def run(self, inputs: Sequence[Any]) -> list[list[str]]:
        start = time.perf_counter()
        batch = self._batch(inputs)
        if self.one_at_a_time:
            probs = [self.session.run(None, {self.input_name: x[None]})[0][0] for x in batch]
        else:
            probs = list(self.session.run(None, {self.input_name: batch})[0])
        self.forward_s += time.perf_counter() - start
        return [self.selector.select(p) for p in probs]

    def close(self) -> None:
        """Nothing process-wide to give back (onnxruntime's threads are the session's own)."""

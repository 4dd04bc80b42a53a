"""Caption processing for training, with sd-scripts' semantics and order.

sd-scripts (``BaseDataset.process_caption`` in library/train_util.py) turns the caption it loaded
for an image into the text of one training step: prefix/suffix (space-joined), whole-caption
dropout, wildcard line and ``{a|b}`` choice (or the first line), then — only when shuffling, token
warmup or tag dropout is on — the fixed/flexible tag split (``keep_tokens`` or
``keep_tokens_separator``), warmup truncation, shuffle and tag dropout, re-joined with ``", "``, and
finally ``secondary_separator`` → ``caption_separator``. Every random draw comes from an injected
``random.Random`` in the same order, so a seed reproduces a caption exactly.

Also here: what caption an image starts from (sidecar file, ``class_tokens`` fallback, fine-tuning
metadata ``caption`` + ``tags``), read the way sd-scripts reads them.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lora_tui.core.captions import caption_lines, find_caption
from lora_tui.core.errors import TrainError

_WILDCARD = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class CaptionOptions:
    """The caption keys of one subset, resolved (defaults are sd-scripts' effective defaults)."""

    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    token_warmup_min: int = 1
    token_warmup_step: float = 0

    @classmethod
    def from_getter(cls, get: Callable[[str], Any]) -> CaptionOptions:
        """Build from a resolver such as ``Subset.get`` (subset → dataset → general → args → default)."""
        values = {}
        for f in fields(cls):
            value = get(f.name)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    @property
    def is_static(self) -> bool:
        """True when a caption is the same every step (sd-scripts' condition for caching text-encoder
        outputs): no dropout, shuffling, tag dropout or token warmup. Wildcards are not checked here,
        exactly as sd-scripts does not."""
        return not (self.caption_dropout_rate > 0 or self.shuffle_caption or self.token_warmup_step > 0
                    or self.caption_tag_dropout_rate > 0)

    def warmup_steps(self, max_train_steps: int) -> float:
        """``token_warmup_step`` below 1 is a fraction of the run; sd-scripts converts it once."""
        if self.token_warmup_step < 1:
            return math.floor(self.token_warmup_step * max_train_steps)
        return self.token_warmup_step


def _choose_wildcards(caption: str, rng: random.Random) -> str:
    """One random line of a multi-line caption, then one option of every ``{a|b|c}``; ``{{``/``}}``
    stay literal braces."""
    if "\n" in caption:
        caption = rng.choice(caption.split("\n"))
    open_mark, close_mark = "⦅", "⦆"
    while open_mark in caption or close_mark in caption:
        open_mark += "⦅"
        close_mark += "⦆"
    caption = caption.replace("{{", open_mark).replace("}}", close_mark)
    caption = _WILDCARD.sub(lambda m: rng.choice(m.group(1).split("|")), caption)
    return caption.replace(open_mark, "{").replace(close_mark, "}")


def _split_stripped(text: str, separator: str) -> list[str]:
    return [t.strip() for t in text.split(separator) if t.strip()]


def _split_fixed_flex(caption: str, opts: CaptionOptions) -> tuple[list[str], list[str], list[str]]:
    """(fixed prefix tags, flexible tags, fixed suffix tags) as sd-scripts splits them."""
    sep = opts.caption_separator
    keep_sep = opts.keep_tokens_separator
    if keep_sep and keep_sep in caption:
        fixed_part, flex_part = caption.split(keep_sep, 1)
        suffix: list[str] = []
        if keep_sep in flex_part:
            flex_part, suffix_part = flex_part.split(keep_sep, 1)
            suffix = _split_stripped(suffix_part, sep)
        return _split_stripped(fixed_part, sep), _split_stripped(flex_part, sep), suffix
    # sd-scripts does not drop empty tags on this path ("a,,b" keeps an empty tag)
    tokens = [t.strip() for t in caption.strip().split(sep)]
    if opts.keep_tokens > 0:
        return tokens[:opts.keep_tokens], tokens[opts.keep_tokens:], []
    return [], tokens, []


def process_caption(caption: str, opts: CaptionOptions, rng: random.Random, *, epoch: int = 0,
                    step: int = 0, max_train_steps: int = 0) -> str:
    """The text one training step sees for ``caption``, exactly in sd-scripts' order.

    ``epoch`` is sd-scripts' 1-based ``current_epoch`` (``caption_dropout_every_n_epochs`` drops the
    caption when ``epoch % n == 0``); ``step`` and ``max_train_steps`` drive token warmup.
    """
    if opts.caption_prefix:
        caption = opts.caption_prefix + " " + caption
    if opts.caption_suffix:
        caption = caption + " " + opts.caption_suffix

    dropped = opts.caption_dropout_rate > 0 and rng.random() < opts.caption_dropout_rate
    every = opts.caption_dropout_every_n_epochs
    if dropped or (every > 0 and epoch % every == 0):
        return ""

    if opts.enable_wildcard:
        caption = _choose_wildcards(caption, rng)
    else:
        caption = caption.split("\n")[0]

    if opts.shuffle_caption or opts.token_warmup_step > 0 or opts.caption_tag_dropout_rate > 0:
        fixed, flex, suffix = _split_fixed_flex(caption, opts)
        warmup = opts.warmup_steps(max_train_steps)
        if warmup and step < warmup:
            keep = math.floor(step * ((len(flex) - opts.token_warmup_min) / warmup)) + opts.token_warmup_min
            flex = flex[:keep]
        if opts.shuffle_caption:
            rng.shuffle(flex)
        if opts.caption_tag_dropout_rate > 0:
            flex = [t for t in flex if rng.random() >= opts.caption_tag_dropout_rate]
        caption = ", ".join(fixed + flex + suffix)

    if opts.secondary_separator:
        caption = caption.replace(opts.secondary_separator, opts.caption_separator)
    return caption


def read_caption_file(path: Path, enable_wildcard: bool) -> str:
    """A sidecar as sd-scripts reads it: the first line stripped, or with wildcards every non-empty
    stripped line joined by newlines. An empty file or non-UTF-8 text stops training, as there."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainError(f"cannot read caption: {exc.strerror or exc}", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TrainError("caption is not valid UTF-8", path=path, hint="re-save the file as UTF-8") from None
    lines = caption_lines(text)
    if not lines:
        raise TrainError("caption file is empty", path=path,
                         hint="write a caption or delete the file to use class_tokens")
    if enable_wildcard:
        return "\n".join(ln.strip() for ln in lines if ln.strip())
    return lines[0].strip()


def dreambooth_caption(image: Path, caption_extension: str, enable_wildcard: bool,
                       class_tokens: str | None) -> tuple[str, str]:
    """(caption, source) for a DreamBooth image: its sidecar ("file"), else ``class_tokens``
    ("class_tokens"), else "" ("empty") — ``class_tokens`` is never prepended to a real caption."""
    found = find_caption(image, caption_extension)
    if found is not None:
        return read_caption_file(found, enable_wildcard), "file"
    if class_tokens is not None:
        return class_tokens, "class_tokens"
    return "", "empty"


def metadata_caption(caption: str | None, tags: str | None, separator: str, enable_wildcard: bool) -> str:
    """A fine-tuning metadata entry's caption joined with its tags the way sd-scripts joins them.

    Without wildcards: ``caption + separator + tags`` (either alone when the other is empty). With
    wildcards: tags (newlines turned into the separator) are appended to every non-empty caption line.
    """
    caption = caption or ""
    if enable_wildcard:
        if tags is None:
            return caption
        tags = tags.replace("\n", separator)
        return "\n".join(f"{line}{separator}{tags}" for line in caption.split("\n") if line.strip())
    if tags:
        caption = (caption + separator if caption else "") + tags
    return caption

"""Counting CLIP tokens the way SD's text encoder sees a caption.

SD 1.x/2.x read at most 75 tokens per chunk (77 with start/end); the rest of a longer caption is
silently cut unless ``max_token_length`` is 150 or 225. When the model folder (or the local
Hugging Face cache) has the CLIP ``vocab.json`` + ``merges.txt``, we count with a real byte-level BPE;
otherwise we estimate and say so.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import regex

_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
CLIP_HUB_DIRS = ("models--openai--clip-vit-large-patch14", "models--laion--CLIP-ViT-H-14-laion2B-s32B-b79K",
                 "models--stabilityai--stable-diffusion-2-1")


@lru_cache(maxsize=1)
def _byte_map() -> dict[int, str]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def _clean(text: str) -> str:
    return " ".join(html.unescape(html.unescape(text)).split()).lower()


@dataclass
class ClipTokenizer:
    """A byte-level BPE counter over CLIP's merges; counts, never ids, so vocab.json is optional."""

    ranks: dict[tuple[str, str], int]
    source: Path
    _cache: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Path) -> ClipTokenizer:
        merges = (folder / "merges.txt").read_text("utf-8").splitlines()
        pairs = [tuple(line.split()) for line in merges[1 : 1 + 48894] if line.strip()]
        return cls({p: i for i, p in enumerate(pairs) if len(p) == 2}, folder)

    def _bpe_len(self, token: str) -> int:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            best = min(((self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))))
            if best[0] == 1 << 30:
                break
            first, second = word[best[1]], word[best[1] + 1]
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = len(word)
        return len(word)

    def count(self, text: str) -> int:
        """Tokens without start/end markers (the number compared with 75)."""
        bmap = _byte_map()
        total = 0
        for piece in _PATTERN.findall(_clean(text)):
            total += self._bpe_len("".join(bmap[b] for b in piece.encode("utf-8")))
        return total


def estimate_tokens(text: str) -> int:
    """Rough count when no tokenizer is at hand: words and punctuation runs, long words split."""
    total = 0
    for piece in _PATTERN.findall(_clean(text)):
        total += max(1, (len(piece) + 5) // 6) if piece.isalpha() else len(piece) if not piece.isalnum() else 1
    return total


def find_tokenizer(model_path: Path | None, extra: list[Path] | None = None) -> ClipTokenizer | None:
    """A CLIP tokenizer from the model folder, a configured folder, or the local HF cache."""
    candidates: list[Path] = list(extra or [])
    if model_path is not None:
        # a single-file model (the usual download) keeps its tokenizer folder beside the file, as the trainer reads it
        base = model_path if model_path.is_dir() else model_path.parent
        candidates += [base / "tokenizer", base]
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                        "huggingface")) / "hub")
    for name in CLIP_HUB_DIRS:
        snapshots = hub / name / "snapshots"
        try:
            for snap in sorted(snapshots.iterdir()):
                candidates += [snap, snap / "tokenizer"]
        except OSError:  # absent, or a shared cache we may not read: fall back to estimates
            continue
    for folder in candidates:
        try:
            if (folder / "merges.txt").is_file():
                return ClipTokenizer.from_folder(folder)
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # unreadable or damaged: try the next place
    return None

"""A tiny byte-level CLIP tokenizer (vocab.json + merges.txt) written from scratch for tests."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core.clip_tokens import _byte_map

MERGES = [("t", "h"), ("th", "e</w>"), ("d", "o"), ("do", "g</w>"), ("s", "k"), ("sk", "s</w>"),
          ("s", "m"), ("sm", "i"), ("smi", "l"), ("smil", "e</w>"), ("g", "i"), ("gi", "r"), ("gir", "l</w>")]


def write_tiny_clip_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_byte_map().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in MERGES) + "\n",
                                       encoding="utf-8")
    return folder

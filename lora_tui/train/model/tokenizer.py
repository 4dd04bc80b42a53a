"""Finding and loading the CLIP tokenizer without the network.

Kept apart from the model loader so a quick check (``lora-tui doctor``) can look for a tokenizer
without importing diffusers. Lookup order: an explicit path, the model's own ``tokenizer/`` folder
(or ``tokenizer/`` / ``<stem>.tokenizer/`` next to a single file), sd-scripts' ``tokenizer_cache_dir``
layout, then the local Hugging Face cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import CLIPTokenizer

from lora_tui.core import offline
from lora_tui.core.errors import ModelError

TOKENIZER_IDS = {False: ("openai/clip-vit-large-patch14", None), True: ("stabilityai/stable-diffusion-2", "tokenizer")}


def _hf_cache_dir() -> str | None:
    """The HF hub cache from the environment as it is now (HF_HUB_CACHE, then HF_HOME/hub).

    huggingface_hub freezes these when first imported; reading them per call lets a caller (or a
    test) point the loader at another cache later.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _has_tokenizer_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all((folder / f).is_file() for f in ("vocab.json", "merges.txt"))


def _tokenizer_from(folder: Path) -> Any:
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load tokenizer: {_first_line(exc)}", path=folder,
                         hint="the folder needs CLIP's vocab.json + merges.txt") from None
    if len(tokenizer) < 256:  # transformers quietly builds a 3-token tokenizer when it finds no vocab
        raise ModelError(f"tokenizer has only {len(tokenizer)} tokens", path=folder,
                         hint="vocab.json is missing or empty; copy CLIP's vocab.json + merges.txt there")
    return tokenizer


def _hf_cached_tokenizer(model_id: str, subfolder: str | None) -> Path | None:
    """The snapshot folder holding `model_id`'s tokenizer in the local Hugging Face cache, if any.

    The cache is read as files (``try_to_load_from_cache``): even a ``local_files_only`` download
    call builds request headers, which sends a DNS query when huggingface_hub thinks it is online.
    Only with --allow-download (core.offline) is a missing tokenizer fetched from the hub.
    """
    from huggingface_hub import try_to_load_from_cache

    names = [f"{subfolder}/{name}" if subfolder else name for name in ("vocab.json", "merges.txt")]
    try:
        found = [try_to_load_from_cache(model_id, name, cache_dir=_hf_cache_dir()) for name in names]
    except Exception:  # an unreadable cache
        found = []
    if found and all(isinstance(f, str) for f in found):
        return Path(str(found[0])).parent
    if not offline.downloads_allowed():
        return None
    from huggingface_hub import hf_hub_download

    try:  # the user asked for it: the one place a tokenizer comes from the network
        files = [hf_hub_download(model_id, name, subfolder=subfolder, cache_dir=_hf_cache_dir())
                 for name in ("vocab.json", "merges.txt")]
    except Exception:
        return None
    return Path(files[0]).parent


def load_tokenizer(model: Path, *, v2: bool, tokenizer_path: str | Path | None = None,
                   tokenizer_cache_dir: str | Path | None = None) -> Any:
    """Find and load the CLIP tokenizer for `model` without the network (order in the module docstring)."""
    if tokenizer_path is not None:
        given = Path(tokenizer_path).expanduser()
        for folder in (given, given / "tokenizer"):
            if _has_tokenizer_files(folder):
                return _tokenizer_from(folder)
        raise ModelError("no vocab.json + merges.txt in the tokenizer folder", path=given,
                         hint="point --tokenizer_path at a folder holding CLIP's tokenizer files")
    model_id, subfolder = TOKENIZER_IDS[v2]
    if model.is_dir():
        candidates = [model / "tokenizer"]
        where = model / "tokenizer"
    else:
        candidates = [model.parent / "tokenizer", model.parent / f"{model.stem}.tokenizer"]
        where = model.parent / "tokenizer"
    if tokenizer_cache_dir is not None:
        candidates.append(Path(tokenizer_cache_dir).expanduser() / model_id.replace("/", "_"))
    for folder in candidates:
        if _has_tokenizer_files(folder):
            return _tokenizer_from(folder)
    cached = _hf_cached_tokenizer(model_id, subfolder)
    if cached is not None:
        return _tokenizer_from(cached)
    raise ModelError(f"no tokenizer found for {model.name}", path=model,
                     hint=f"put vocab.json + merges.txt in {where}/, or pass --tokenizer_path "
                          f"(or cache {model_id} locally)")

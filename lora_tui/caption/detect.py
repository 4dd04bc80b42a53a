"""Which captioner a model path is, read from its files alone (no torch, no network).

A WD14-style tagger is an ONNX file with ``selected_tags.csv`` beside it; a sentence captioner is a
transformers folder whose ``config.json`` names its family. Hub ids are refused here, before any
library that could reach the network is imported, unless ``--allow-download`` was given.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core.errors import ModelError

TAGS_CSV = "selected_tags.csv"
KINDS = ("auto", "vlm", "tagger")
# families that caption an image without a prompt (a prompt, if given, is the caption's start)
IMAGE_TO_TEXT = frozenset({"blip", "blip-2", "git", "vision-encoder-decoder", "pix2struct", "kosmos-2"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A local captioner: ``family`` is "tagger", "image-to-text" (BLIP, BLIP-2, GIT) or "chat"."""

    path: Path
    kind: str
    family: str
    model_type: str = ""
    onnx_file: Path | None = None
    tags_csv: Path | None = None

    @property
    def name(self) -> str:
        return (self.path.parent.name if self.path.is_file() else self.path.name) or str(self.path)


def looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and not text.startswith((".", "/", "~"))


def resolve(model: str, kind: str = "auto", *, allow_download: bool = False) -> ModelSpec:
    """The local model ``model`` names; a hub id without ``allow_download`` is a one-line error."""
    if kind not in KINDS:
        raise ModelError(f"unknown captioner kind {kind!r}", hint="use auto, vlm or tagger")
    path = Path(model).expanduser()
    if not path.exists():
        if looks_like_hub_id(model):
            if not allow_download:
                raise ModelError(f"model {model!r} is not a local folder; it looks like a Hugging Face hub id "
                                 "and nothing is downloaded unless asked",
                                 hint=f"download it first (huggingface-cli download {model} --local-dir DIR) and "
                                      "pass --model DIR, or add --allow-download")
            path = _download(model)
        else:
            raise ModelError("model folder does not exist", path=path,
                             hint="pass --model with a local folder (transformers captioner, or an ONNX tagger "
                                  f"with {TAGS_CSV})")
    return detect(path, kind)


def detect(path: Path, kind: str = "auto") -> ModelSpec:
    """Tell a tagger from a transformers captioner by its files; a mismatch with ``kind`` is an error."""
    tagger = _find_tagger(path)
    config = path / "config.json" if path.is_dir() else None
    if kind == "tagger" or (kind == "auto" and tagger is not None):
        if tagger is None:
            raise ModelError(f"no ONNX tagger here (expected a .onnx file and {TAGS_CSV})", path=path,
                             hint="point --model at a WD14-style tagger folder")
        return ModelSpec(path, "tagger", "tagger", "onnx", *tagger)
    if config is None or not config.is_file():
        raise ModelError("not a captioner: no config.json (transformers) and no .onnx with "
                         f"{TAGS_CSV} (tagger)", path=path, hint="point --model at the model's folder")
    try:
        data = json.loads(config.read_text("utf-8"))
        model_type = str(data["model_type"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"config.json cannot be read as a transformers config ({exc})", path=config,
                         hint="re-download the model folder") from None
    family = "image-to-text" if model_type in IMAGE_TO_TEXT else "chat"
    return ModelSpec(path, "vlm", family, model_type)


def _find_tagger(path: Path) -> tuple[Path, Path] | None:
    """(onnx file, tags csv) if ``path`` is a tagger folder or its .onnx file."""
    if path.is_file():
        csv = path.with_name(TAGS_CSV)
        return (path, csv) if path.suffix == ".onnx" and csv.is_file() else None
    if not path.is_dir() or not (path / TAGS_CSV).is_file():
        return None
    onnx = sorted(p for p in path.iterdir() if p.suffix == ".onnx")
    if not onnx:
        return None
    preferred = [p for p in onnx if p.name == "model.onnx"]
    return (preferred or onnx)[0], path / TAGS_CSV


def _download(repo_id: str) -> Path:
    """Only with --allow-download: fetch the repository into the local hub cache."""
    os.environ.pop("HF_HUB_OFFLINE", None)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        raise ModelError("huggingface_hub is not installed, so nothing can be downloaded",
                         hint="pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:
        raise ModelError(f"cannot download {repo_id!r}: {type(exc).__name__}: {exc}",
                         hint="check the id and the network, or download it yourself and pass the folder") from None

"""Which Stable Diffusion family a base model is (SD1, SD2, SD2-v, SDXL), from headers only, torch-free.

Lint, the overview and `doctor` need the family to judge settings (`v2 = true` on an SDXL file, 512 px
on SDXL, which sd-scripts script to launch) without importing torch or reading weights. A safetensors
file starts with an 8-byte little-endian length and a JSON header naming every tensor; the tensor
names say the family (`conditioner.embedders.*` is SDXL's, `cond_stage_model.model.*` OpenCLIP is SD2's,
`cond_stage_model.transformer.*` CLIP-L is SD1's). A Diffusers folder says it in its JSON files.
`.ckpt` pickles cannot be read without torch: their family is None here (doctor reads them with torch).

SD2 and SD2-v weights have the same tensor names; only metadata tells them apart (a Diffusers
scheduler's `prediction_type`, or `modelspec.prediction_type` in a safetensors header).
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

SD1, SD2, SD2_V, SDXL, UNKNOWN = "sd_v1", "sd_v2", "sd_v2_v", "sdxl", "unknown"
LABELS = {SD1: "SD1.x", SD2: "SD2.x", SD2_V: "SD2.x-v", SDXL: "SDXL", UNKNOWN: "unknown"}
# the built-in trainer's answer for SDXL until it trains SDXL itself (issue 13)
SDXL_BUILTIN_REFUSAL = 'SDXL needs the sd-scripts backend for now: set backend = "sd-scripts"'
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


class FamilyError(ValueError):
    """The model's header cannot be read (truncated file, not a safetensors file, broken JSON)."""


def family_from_keys(keys: Any) -> str:
    """'sdxl', 'sd_v2', 'sd_v1' or 'unknown' from original-layout (single-file) tensor names."""
    family = UNKNOWN
    for key in keys:
        if key.startswith("conditioner.embedders."):
            return SDXL
        if key.startswith("cond_stage_model.model."):
            family = SD2
        elif key.startswith("cond_stage_model.transformer.") and family == UNKNOWN:
            family = SD1
    return family


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor name → dtype/shape/offsets, plus `__metadata__`)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise FamilyError("file too short for a safetensors header")
            (size,) = struct.unpack("<Q", head)
            if size > MAX_HEADER_BYTES:
                raise FamilyError(f"header length {size} is not plausible (not a safetensors file?)")
            raw = handle.read(size)
    except OSError as exc:
        raise FamilyError(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) < size:
        raise FamilyError("header is truncated")
    try:
        header = json.loads(raw)
    except ValueError:
        raise FamilyError("header is not JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise FamilyError("header is not a JSON object")
    return header


def safetensors_family(path: Path) -> str:
    """Family of a single `.safetensors` checkpoint from its header (SD2-v when its metadata says v)."""
    header = read_safetensors_header(path)
    family = family_from_keys(k for k in header if k != "__metadata__")
    meta = header.get("__metadata__") or {}
    if family == SD2 and isinstance(meta, dict):
        prediction = str(meta.get("modelspec.prediction_type", ""))
        if prediction in ("v", "v_prediction") or str(meta.get("modelspec.architecture", "")).endswith("-v"):
            family = SD2_V
    return family


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FamilyError(f"{path.name} missing from the Diffusers folder") from None
    except (OSError, ValueError) as exc:
        raise FamilyError(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FamilyError(f"{path.name} is not a JSON object")
    return data


def diffusers_family(root: Path) -> str:
    """Family of a Diffusers folder: a second text encoder is SDXL; a gelu text encoder SD2 (v from the
    scheduler's prediction_type)."""
    index = _json(root / "model_index.json")
    if "text_encoder_2" in index or (root / "text_encoder_2").is_dir() or "XL" in str(index.get("_class_name")):
        return SDXL
    te = _json(root / "text_encoder" / "config.json")
    if te.get("hidden_act") != "gelu":
        return SD1
    scheduler = root / "scheduler" / "scheduler_config.json"
    if scheduler.is_file() and _json(scheduler).get("prediction_type") == "v_prediction":
        return SD2_V
    return SD2


@lru_cache(maxsize=32)
def _cached(path: str, mtime_ns: int, size: int) -> str | None:
    p = Path(path)
    if p.is_dir():
        return diffusers_family(p)
    if p.suffix.lower() == ".safetensors":
        return safetensors_family(p)
    return None


def detect_family(path: Path | None) -> str | None:
    """The model's family, or None when it cannot be told without torch (a `.ckpt`, a missing path).

    Raises FamilyError when the header is unreadable. Cached by path, mtime and size: lint and the
    overview call this on every refresh.
    """
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return _cached(str(path), st.st_mtime_ns, st.st_size)


def family_or_none(path: Path | None) -> str | None:
    """`detect_family`, with an unreadable header counted as unknown (lint reports that elsewhere)."""
    try:
        return detect_family(path)
    except FamilyError:
        return None


def family_of_value(raw: object, root: Path) -> str | None:
    """The family of a model setting as the user wrote it: a ``lora-tui:`` reference has its own (built
    or not), a path is read from its header, a hub id or nothing is unknown."""
    from lora_tui.core import builtin_models
    from lora_tui.core.project import is_hub_id, resolve_path

    if builtin_models.is_reference(raw):
        known = builtin_models.find(raw)
        return known.family if known else None
    if not raw or not isinstance(raw, str) or is_hub_id(root, raw):
        return None
    return family_or_none(resolve_path(root, raw))


def is_sdxl(path: Path | None) -> bool:
    return family_or_none(path) == SDXL

"""Header-only model files: a safetensors file whose tensor names say a model family, no weights.

Enough for everything that reads headers (family detection, lint, the backends' script choice)
without torch or a real checkpoint.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

FAMILY_KEYS = {
    "sdxl": ["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
             "conditioner.embedders.1.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"],
    "sd_v2": ["cond_stage_model.model.ln_final.weight", "model.diffusion_model.out.2.weight"],
    "sd_v1": ["cond_stage_model.transformer.text_model.final_layer_norm.weight", "model.diffusion_model.out.2.weight"],
}


def write_header_only_model(path: Path, family: str, metadata: dict[str, str] | None = None) -> Path:
    """A valid safetensors file of empty tensors named like `family`'s checkpoint keys."""
    header: dict = {key: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for key in FAMILY_KEYS[family]}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path

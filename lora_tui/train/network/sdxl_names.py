"""SDXL LoRA names: diffusers' U-Net module paths in sd-scripts' original (SGM/LDM) layout.

sd-scripts trains SDXL on its own U-Net (`library/sdxl_original_unet.py`), whose module tree is the
original checkpoint's (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`, `middle_block.1…`,
`output_blocks.…`), and names its LoRA modules after that tree; webui, ComfyUI and diffusers'
`StableDiffusionXLPipeline.load_lora_weights` expect those names. lora-tui's SDXL U-Net is diffusers'
`UNet2DConditionModel`, so every adapted layer's diffusers path is renamed to its SGM path. The
rename is derived from the U-Net's own config (block types, layers per block) by the same module map
that writes our SDXL single files (`model/ldm_convert.py`, checked bit-identical against diffusers'
single-file loader), so it follows the config rather than a hand-written list.

SD1/SD2 LoRAs keep diffusers' paths (`lora_unet_down_blocks_…`): that is what sd-scripts writes
for them, because it trains those on a diffusers-layout U-Net.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from torch import nn

# sd-scripts' LORA_PREFIX_TEXT_ENCODER1 / LORA_PREFIX_TEXT_ENCODER2: CLIP-L, then OpenCLIP bigG
TE_PREFIXES_SDXL = ("lora_te1", "lora_te2")


def is_sdxl_unet(unet: nn.Module | None) -> bool:
    """An SDXL U-Net: diffusers' U-Net with SDXL's `text_time` added embedding (pooled text + sizes)."""
    config: Any = getattr(unet, "config", None)
    if config is None:
        return False
    kind = config.get("addition_embed_type") if isinstance(config, Mapping) else getattr(
        config, "addition_embed_type", None)
    return kind == "text_time"


def sgm_paths(config: Any, paths: Iterable[str]) -> dict[str, str]:
    """{diffusers module path: SGM module path} for weighted layers of an SDXL diffusers U-Net (its config).

    Raises KeyError (ldm_convert's UnmappedKeyError) for a path the SGM layout has no place for,
    i.e. a U-Net config that is not SDXL-shaped.
    """
    from lora_tui.train.model.ldm_convert import UNET_PREFIX, unet_key_map

    paths = list(paths)
    mapped = unet_key_map(config, [f"{p}.weight" for p in paths])
    out = {}
    for path in paths:
        key = mapped[f"{path}.weight"].key
        out[path] = key[len(UNET_PREFIX):-len(".weight")]
    return out


@lru_cache(maxsize=1)
def _sdxl_config() -> dict[str, Any]:
    from lora_tui.train.model.sdxl_load import SDXL_CONFIG_DIR

    return json.loads((SDXL_CONFIG_DIR / "unet" / "config.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _sgm_blocks() -> list[tuple[str, str, dict[str, str]]]:
    """(SGM prefix, diffusers prefix, SGM → diffusers rename of what follows), longest SGM prefix first."""
    from lora_tui.train.model.ldm_convert import _unet_modules

    blocks = [(orig, diffusers, {new: old for old, new in table.items()})
              for diffusers, (orig, table) in _unet_modules(_sdxl_config()).items()]
    return sorted(blocks, key=lambda b: -len(b[0]))


def diffusers_to_sgm(path: str) -> str:
    """An SDXL U-Net module path from diffusers' layout to the original one (SDXL 1.0's block structure).

    Every SDXL-family base (SDXL 1.0, Pony, Illustrious, NoobAI) shares that structure; it is what
    `lora convert` needs when it has a file but no model. Raises KeyError for a path SDXL lacks.
    """
    return sgm_paths(_sdxl_config(), [path])[path]


def sgm_to_diffusers(path: str) -> str:
    """The inverse of `diffusers_to_sgm`; KeyError for a path outside SDXL's U-Net blocks."""
    for orig, diffusers, inverse in _sgm_blocks():
        if path == orig or path.startswith(orig + "."):
            rest = path[len(orig) + 1:]
            for new, old in inverse.items():
                if rest == new or rest.startswith(new + "."):
                    rest = old + rest[len(new):]
                    break
            return f"{diffusers}.{rest}" if rest else diffusers
    raise KeyError(f"{path!r} is not a module of SDXL's U-Net")


def lora_family(keys: Iterable[str] | Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> str | None:
    """"sdxl" or "sd" (SD1.x/SD2.x) for a LoRA (metadata first, then its names and, given a state
    dict, its tensor shapes: core/lora_arch.py); None when that cannot be told."""
    from lora_tui.core.lora_arch import classify, shapes_of

    source = shapes_of(keys) if isinstance(keys, Mapping) else keys
    is_sdxl = classify(source, metadata).is_sdxl
    return None if is_sdxl is None else ("sdxl" if is_sdxl else "sd")


def family_words(family: str, metadata: Mapping[str, str] | None = None) -> str:
    """How a mismatch message names a LoRA's base: "SDXL" or "SD1.x/SD2.x (sd_v1)"."""
    base = str((metadata or {}).get("ss_base_model_version") or "")
    words = "SDXL" if family == "sdxl" else "SD1.x/SD2.x"
    # metadata the tensors contradict (core/lora_arch.py lets them win) is not quoted as the family
    agrees = base.startswith("sdxl") if family == "sdxl" else base.startswith(("sd_v1", "sd_v2"))
    return f"{words} ({base})" if agrees else words

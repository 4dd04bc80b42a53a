"""Key mapping between the original (LDM / CompVis) Stable Diffusion checkpoint layout and Diffusers.

Single-file checkpoints (`.safetensors`, `.ckpt`) keep every weight of the U-Net, VAE and text
encoder in one flat dict under the prefixes `model.diffusion_model.`, `first_stage_model.` and
`cond_stage_model.`. The trainer works with Diffusers modules, so each Diffusers key is mapped to the
original key it comes from. The map is computed from the Diffusers config (block counts, layers per
block) rather than from the file, so the same code reads real SD1.x/SD2.x checkpoints and the tiny
test checkpoints, and so the mapping can be checked exhaustively on meta tensors without weights.

Three differences are more than a rename:
- the SD VAE stores its mid-block attention q/k/v/proj_out as 1x1 convolutions ([C, C, 1, 1]) where
  Diffusers uses Linear layers ([C, C]);
- SD2's OpenCLIP text encoder keeps q/k/v in one `in_proj_weight` ([3C, C]) that is split in three;
- SD2's text encoder has 24 resblocks but SD2 uses the penultimate layer, so the Diffusers model has
  23 layers and the last resblock (and `text_projection`, `logit_scale`) is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lora_tui.core.model_family import family_from_keys

# torch cannot tell a pickle with code from a file that is no checkpoint: both fail the same way
PICKLE_REFUSED = "refused: not a weights-only checkpoint (it contains code, or is not a PyTorch checkpoint at all)"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TE_V1_PREFIX = "cond_stage_model.transformer."
TE_V2_PREFIX = "cond_stage_model.model."

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


@dataclass(frozen=True)
class Source:
    """Where one Diffusers tensor lives in the original layout.

    `part`/`parts` select a slice along dim 0 (OpenCLIP's fused q/k/v); `conv1x1` marks a Linear
    weight stored as a 1x1 convolution.
    """

    key: str
    part: int | None = None
    parts: int = 1
    conv1x1: bool = False
    transpose: bool = False  # OpenCLIP's text_projection is stored as [hidden, projection]


class UnmappedKeyError(KeyError):
    """A Diffusers key the SD layout has no place for (a config this converter does not cover)."""


def _rename_head(suffix: str, table: Mapping[str, str]) -> str:
    """Rename the leading module path of `suffix` (e.g. `norm1.weight`) using `table`."""
    for old, new in table.items():
        if suffix.startswith(old + "."):
            return new + suffix[len(old):]
    return suffix


def _cfg(config: Any, name: str) -> Any:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def _cfg_get(config: Any, name: str) -> Any:
    return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)


def _layers_per_block(config: Any) -> int:
    lpb = _cfg(config, "layers_per_block")
    if not isinstance(lpb, int):
        raise UnmappedKeyError(f"layers_per_block={lpb!r} is not a single number (not an SD1/SD2 layout)")
    return lpb


def _unet_modules(config: Any) -> dict[str, tuple[str, Mapping[str, str]]]:
    """Diffusers module prefix -> (original module prefix, rename table for what follows)."""
    plain: Mapping[str, str] = {}
    modules: dict[str, tuple[str, Mapping[str, str]]] = {
        "time_embedding.linear_1": ("time_embed.0", plain), "time_embedding.linear_2": ("time_embed.2", plain),
        "conv_in": ("input_blocks.0.0", plain), "conv_norm_out": ("out.0", plain), "conv_out": ("out.2", plain),
        "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET), "mid_block.attentions.0": ("middle_block.1", plain),
        "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET),
    }
    if _cfg_get(config, "addition_embed_type") == "text_time":  # SDXL's pooled-text + size embedding
        modules["add_embedding.linear_1"] = ("label_emb.0.0", plain)
        modules["add_embedding.linear_2"] = ("label_emb.0.2", plain)
    lpb = _layers_per_block(config)
    down = list(_cfg(config, "down_block_types"))
    for i, kind in enumerate(down):
        base = 1 + i * (lpb + 1)
        for j in range(lpb):
            modules[f"down_blocks.{i}.resnets.{j}"] = (f"input_blocks.{base + j}.0", _UNET_RESNET)
            if "CrossAttn" in kind:
                modules[f"down_blocks.{i}.attentions.{j}"] = (f"input_blocks.{base + j}.1", plain)
        if i < len(down) - 1:
            modules[f"down_blocks.{i}.downsamplers.0.conv"] = (f"input_blocks.{base + lpb}.0.op", plain)
    up = list(_cfg(config, "up_block_types"))
    for i, kind in enumerate(up):
        base = i * (lpb + 1)
        has_attention = "CrossAttn" in kind
        for j in range(lpb + 1):
            modules[f"up_blocks.{i}.resnets.{j}"] = (f"output_blocks.{base + j}.0", _UNET_RESNET)
            if has_attention:
                modules[f"up_blocks.{i}.attentions.{j}"] = (f"output_blocks.{base + j}.1", plain)
        if i < len(up) - 1:
            slot = 2 if has_attention else 1
            modules[f"up_blocks.{i}.upsamplers.0.conv"] = (f"output_blocks.{base + lpb}.{slot}.conv", plain)
    return modules


def _vae_modules(config: Any) -> dict[str, tuple[str, Mapping[str, str]]]:
    plain: Mapping[str, str] = {}
    modules: dict[str, tuple[str, Mapping[str, str]]] = {
        "quant_conv": ("quant_conv", plain), "post_quant_conv": ("post_quant_conv", plain)}
    lpb = _layers_per_block(config)
    blocks = len(_cfg(config, "block_out_channels"))
    for side in ("encoder", "decoder"):
        modules[f"{side}.conv_in"] = (f"{side}.conv_in", plain)
        modules[f"{side}.conv_out"] = (f"{side}.conv_out", plain)
        modules[f"{side}.conv_norm_out"] = (f"{side}.norm_out", plain)
        modules[f"{side}.mid_block.resnets.0"] = (f"{side}.mid.block_1", _VAE_RESNET)
        modules[f"{side}.mid_block.resnets.1"] = (f"{side}.mid.block_2", _VAE_RESNET)
        modules[f"{side}.mid_block.attentions.0"] = (f"{side}.mid.attn_1", _VAE_ATTENTION)
    for i in range(blocks):
        for j in range(lpb):
            modules[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RESNET)
        if i < blocks - 1:
            modules[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", plain)
        orig = blocks - 1 - i  # the original decoder numbers its up blocks from the lowest resolution
        for j in range(lpb + 1):
            modules[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{orig}.block.{j}", _VAE_RESNET)
        if i < blocks - 1:
            modules[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = (f"decoder.up.{orig}.upsample.conv", plain)
    return modules


def _map_by_modules(keys: Iterable[str], modules: Mapping[str, tuple[str, Mapping[str, str]]],
                    prefix: str) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for key in keys:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:cut])
            if head in modules:
                orig, table = modules[head]
                suffix = _rename_head(".".join(parts[cut:]), table)
                conv1x1 = table is _VAE_ATTENTION and suffix.split(".")[0] in {"q", "k", "v", "proj_out"} \
                    and suffix.endswith(".weight")
                out[key] = Source(f"{prefix}{orig}.{suffix}", conv1x1=conv1x1)
                break
        else:
            raise UnmappedKeyError(f"no SD checkpoint key for Diffusers key {key!r}")
    return out


def unet_key_map(config: Any, keys: Iterable[str]) -> dict[str, Source]:
    """Map Diffusers U-Net keys to `model.diffusion_model.*` keys (SD1.x/SD2.x block layout)."""
    return _map_by_modules(keys, _unet_modules(config), UNET_PREFIX)


def vae_key_map(config: Any, keys: Iterable[str]) -> dict[str, Source]:
    """Map Diffusers AutoencoderKL keys to `first_stage_model.*` keys."""
    return _map_by_modules(keys, _vae_modules(config), VAE_PREFIX)


def text_encoder_key_map(keys: Iterable[str], *, v2: bool) -> dict[str, Source]:
    """Map CLIPTextModel keys to SD1's HF-CLIP keys or SD2's OpenCLIP keys.

    transformers 4 names the keys `text_model.encoder...`, transformers 5 drops the `text_model.`
    level; both map to the same checkpoint keys (which always have it).
    """
    out: dict[str, Source] = {}
    for key in keys:
        if key.endswith("position_ids"):
            continue  # a buffer, recomputed by transformers; old checkpoints carry stale copies
        canonical = key if key.startswith("text_model.") else "text_model." + key
        out[key] = _openclip_source(canonical) if v2 else Source(TE_V1_PREFIX + canonical)
    return out


def _openclip_source(key: str) -> Source:
    fixed = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    if key in fixed:
        return Source(TE_V2_PREFIX + fixed[key])
    head = "text_model.encoder.layers."
    if not key.startswith(head):
        raise UnmappedKeyError(f"no OpenCLIP key for text encoder key {key!r}")
    index, rest = key[len(head):].split(".", 1)
    block = f"{TE_V2_PREFIX}transformer.resblocks.{index}."
    module, leaf = rest.rsplit(".", 1)
    if module.startswith("self_attn.") and module.split(".")[1] in _QKV:
        return Source(f"{block}attn.in_proj_{leaf}", part=_QKV[module.split(".")[1]], parts=3)
    if module not in _OPENCLIP_LAYER:
        raise UnmappedKeyError(f"no OpenCLIP key for text encoder key {key!r}")
    return Source(f"{block}{_OPENCLIP_LAYER[module]}.{leaf}")


SDXL_TE1_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TE2_PREFIX = "conditioner.embedders.1.model."


def sdxl_text_encoder_key_map(keys: Iterable[str], *, second: bool) -> dict[str, Source]:
    """Map SDXL's CLIP-L (`second=False`, HF layout) or OpenCLIP bigG (`second=True`) text encoder keys.

    SDXL keeps every layer of the second encoder (the penultimate is chosen at run time) and its
    `text_projection`, which OpenCLIP stores transposed.
    """
    out: dict[str, Source] = {}
    for key in keys:
        if key.endswith("position_ids"):
            continue
        if second and key == "text_projection.weight":
            out[key] = Source(SDXL_TE2_PREFIX + "text_projection", transpose=True)
            continue
        canonical = key if key.startswith("text_model.") else "text_model." + key
        if second:
            source = _openclip_source(canonical)
            out[key] = Source(SDXL_TE2_PREFIX + source.key[len(TE_V2_PREFIX):], part=source.part, parts=source.parts)
        else:
            out[key] = Source(SDXL_TE1_PREFIX + canonical)
    return out


def normalize_text_encoder_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the `text_model.` level that SD1 checkpoints saved with old transformers lack."""
    old = TE_V1_PREFIX + "embeddings.token_embedding.weight"
    if old not in state_dict:
        return state_dict
    fixed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(TE_V1_PREFIX) and not key.startswith(TE_V1_PREFIX + "text_model."):
            key = TE_V1_PREFIX + "text_model." + key[len(TE_V1_PREFIX):]
        fixed[key] = value
    return fixed


def pull(state_dict: Mapping[str, torch.Tensor], source: Source) -> torch.Tensor | None:
    """The Diffusers-shaped tensor for `source`, or None when the checkpoint lacks its key."""
    tensor = state_dict.get(source.key)
    if tensor is None:
        return None
    if source.part is not None:
        if tensor.shape[0] % source.parts:
            return tensor  # leave the wrong shape for the caller's shape check to report
        tensor = tensor.chunk(source.parts, dim=0)[source.part]
    if source.conv1x1 and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
        tensor = tensor[:, :, 0, 0]
    if source.transpose and tensor.ndim == 2:
        tensor = tensor.T
    return tensor


def to_ldm(diffusers_sd: Mapping[str, torch.Tensor], key_map: Mapping[str, Source]) -> dict[str, torch.Tensor]:
    """Convert Diffusers tensors to the original layout (the inverse of `pull`)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for key, tensor in diffusers_sd.items():
        if key not in key_map:
            continue
        source = key_map[key]
        if source.conv1x1 and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        if source.transpose:
            tensor = tensor.T
        if source.part is not None:
            fused.setdefault(source.key, []).append((source.part, tensor))
            continue
        out[source.key] = tensor.contiguous()
    for key, pieces in fused.items():
        out[key] = torch.cat([t for _, t in sorted(pieces, key=lambda item: item[0])], dim=0)
    return out


def detect_family(keys: Iterable[str]) -> str:
    """'sd_v1', 'sd_v2' or 'sdxl'/'unknown', from the text-encoder (and conditioner) key prefixes."""
    return family_from_keys(keys)

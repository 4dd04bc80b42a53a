"""`lora-tui lora convert`: between kohya, diffusers and peft key styles (SD1/SD2 and SDXL LoRAs).

- kohya: sd-scripts' layout (`lora_unet_<path>` / `lora_te_<path>` with "." → "_",
  `.lora_down.weight`, `.lora_up.weight`, `.alpha`), what webui and ComfyUI read.
- diffusers: what diffusers' `save_lora_weights` writes: `unet.<path>.lora_A.weight` /
  `.lora_B.weight`, `text_encoder.<path>…`, and the alphas in the `lora_adapter_metadata` header
  (peft LoraConfig fields with rank_pattern/alpha_pattern per module) — so
  `pipe.load_lora_weights(file)` applies the same strength as the kohya file.
- peft: one PEFT adapter per model, as diffusers' `save_lora_adapter` / peft write them: a folder
  with `unet/` and `text_encoder/`, each `pytorch_lora_weights.safetensors` (keys `<path>.lora_A.weight`,
  LoraConfig in the header) plus `adapter_config.json`.
The kohya → diffusers direction rebuilds module paths from the underscore names with the names
diffusers/transformers use (`down_blocks`, `to_q`, `self_attn`, …), so kohya → X → kohya is exact.

SDXL: kohya names are `lora_te1_…`/`lora_te2_…` (diffusers' `text_encoder.`/`text_encoder_2.`) and
`lora_unet_…` in the original SGM layout (`input_blocks_4_1_…`), which maps to and from diffusers'
U-Net paths through SDXL's block structure (`network/sdxl_names.py`). A diffusers/peft file is told
SDXL by its metadata, a `text_encoder_2` part, or a U-Net layout only SDXL has.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lora_tui.core.lora_arch import FAMILY_KEY, classify, shapes_of
from lora_tui.core.lora_inspect import key_style, read_header
from lora_tui.train.lora_tools.factors import ALPHA, DOWN, UP, LoraToolError
from lora_tui.train.network.file import SDXL_ARCHITECTURE, load_lora, save_lora
from lora_tui.train.network.sdxl_names import diffusers_to_sgm, sgm_to_diffusers

STYLES = ("kohya", "diffusers", "peft")
META_KEY = "lora_adapter_metadata"
PEFT_WEIGHTS = "pytorch_lora_weights.safetensors"
PARTS = (("lora_unet_", "unet"), ("lora_te_", "text_encoder"))
SDXL_PARTS = (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"))
PART_NAMES = ("unet", "text_encoder", "text_encoder_2")
SGM_UNET = ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")
# Module names that contain "_" in diffusers' UNet and transformers' CLIP (longest first).
COMPOUNDS = sorted({
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "proj_in", "proj_out", "to_q", "to_k", "to_v",
    "to_out", "time_emb_proj", "conv_shortcut", "conv_in", "conv_out", "time_embedding", "linear_1", "linear_2",
    "text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj", "final_layer_norm", "layer_norm1",
    "layer_norm2", "add_k_proj", "add_v_proj", "conv_norm_out", "class_embedding",
    # SDXL's original (SGM) U-Net layout
    "input_blocks", "middle_block", "output_blocks", "in_layers", "out_layers", "emb_layers", "skip_connection",
}, key=lambda s: -s.count("_"))


def kohya_to_path(name: str) -> tuple[str, str]:
    """('unet' | 'text_encoder' | 'text_encoder_2', diffusers' dotted module path) of a kohya module name."""
    found = next(((prefix, part) for prefix, part in SDXL_PARTS[1:] + PARTS if name.startswith(prefix)), None)
    if found is None:
        raise LoraToolError(f"{name!r}: not a kohya LoRA module name (lora_unet_, lora_te_, lora_te1_, lora_te2_)")
    prefix, part = found
    tokens = name[len(prefix):].split("_")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for compound in COMPOUNDS:
            n = compound.count("_") + 1
            if "_".join(tokens[i:i + n]) == compound:
                out.append(compound)
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    path = ".".join(out)
    if name.startswith(SGM_UNET):
        try:
            path = sgm_to_diffusers(path)
        except KeyError:
            raise LoraToolError(f"{name!r} names no module of SDXL's U-Net") from None
    return part, path


def path_to_kohya(part: str, path: str, sdxl: bool = False) -> str:
    """The kohya name of a diffusers module path; SDXL's U-Net names take the original layout."""
    if sdxl and part == "unet":
        try:
            path = diffusers_to_sgm(path)
        except KeyError:
            raise LoraToolError(f"unet.{path} is no module of SDXL's U-Net") from None
    prefix = {p: k for k, p in (SDXL_PARTS if sdxl else PARTS)}.get(part)
    if prefix is None:  # text_encoder_2 told (or said with --base) to be SD1/SD2's
        raise LoraToolError(f"{part}.{path}: SD1/SD2 LoRAs have one text encoder; {part} is SDXL's",
                            hint="this is an SDXL LoRA: use --base sdxl, or leave --base out")
    return prefix + path.replace(".", "_")


BASES = ("sdxl", "sd")


def family_of(shapes: dict[str, tuple[int, ...]], meta: dict[str, str] | None, base: str | None) -> bool | None:
    """SDXL or not (None: cannot tell) from the metadata, names and shapes (core/lora_arch.py); `base`
    ("sdxl" or "sd", the user's --base) decides where they cannot and must agree where they can."""
    verdict = classify(shapes, meta)
    if base is None:
        return verdict.is_sdxl
    if verdict.is_sdxl is not None and verdict.is_sdxl != (base == "sdxl"):
        raise LoraToolError(f"--base {base} contradicts the file: it is {verdict.family} ({verdict.reason()})",
                            hint="leave --base out")
    return base == "sdxl"


def parts_are_sdxl(parts: dict[str, Any], meta: dict[str, str] | None = None, base: str | None = None,
                   fallback: str | None = None) -> bool:
    """Whether diffusers-style parts belong to an SDXL LoRA. Where that cannot be told, `fallback` (the
    family of the model it is for, when there is one) decides, else a LoraToolError asks for --base: the
    kohya names differ (SDXL's U-Net takes the original layout, its encoders lora_te1_/lora_te2_)."""
    shapes = {f"{part}.{key}": tuple(value.shape) for part, (tensors, _) in parts.items()
              for key, value in tensors.items()}
    verdict = classify(shapes, meta)
    if verdict.foreign and base is None:
        raise LoraToolError(verdict.reason(), hint="lora-tui's LoRA tools are for SD1/SD2/SDXL LoRAs; --base sdxl "
                            "or --base sd renames it as one of those anyway")
    sdxl = family_of(shapes, meta, base)
    if sdxl is None and fallback is not None:
        return fallback == "sdxl"
    if sdxl is None:
        raise LoraToolError(f"this LoRA's base model family is unclear: {classify(shapes, meta).reason()}",
                            hint="say which with --base sdxl or --base sd (SD1.x/SD2.x)")
    return sdxl


def _config(ranks: dict[str, int], alphas: dict[str, float]) -> dict[str, Any]:
    """peft LoraConfig fields: the most common rank/alpha, the rest per module."""
    r = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    return {"r": r, "lora_alpha": alpha, "target_modules": sorted(ranks),
            "rank_pattern": {k: v for k, v in ranks.items() if v != r},
            "alpha_pattern": {k: v for k, v in alphas.items() if v != alpha},
            "init_lora_weights": True, "lora_dropout": 0.0, "bias": "none", "use_dora": False}


def _pattern(part: str, path: str) -> str:
    # transformers 5 drops CLIPTextModel's `text_model` level and diffusers strips it from keys;
    # patterns match by suffix, so leaving it out matches both.
    return path.removeprefix("text_model.") if part.startswith("text_encoder") else path


def kohya_to_parts(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """Per part ('unet', 'text_encoder'): (peft state dict without prefix, LoraConfig fields)."""
    parts: dict[str, tuple[dict[str, torch.Tensor], dict[str, int], dict[str, float]]] = {}
    dora = next((k for k in state_dict if k.endswith(".dora_scale")), None)
    if dora is not None:
        raise LoraToolError(f"{dora}: DoRA (dora_scale) LoRAs are not supported by convert",
                            hint="only plain LoRA (lora_down/lora_up/alpha) files convert")
    other = next((k for k in state_dict if not k.endswith((DOWN, UP, ALPHA))), None)
    if other is not None:
        raise LoraToolError(f"{other!r} is not a LoRA tensor this tool knows",
                            hint="only plain LoRA (lora_down/lora_up/alpha) files convert")
    names = dict.fromkeys(k.rsplit(".", 2)[0] if k.endswith((DOWN, UP)) else k[: -len(ALPHA)]
                          for k in state_dict)
    for name in names:
        if name + DOWN not in state_dict or name + UP not in state_dict:
            raise LoraToolError(f"{name} lacks lora_down/lora_up weights", hint="the file is incomplete")
        part, path = kohya_to_path(name)
        tensors, ranks, alphas = parts.setdefault(part, ({}, {}, {}))
        down = state_dict[name + DOWN]
        tensors[f"{path}.lora_A.weight"] = down
        tensors[f"{path}.lora_B.weight"] = state_dict[name + UP]
        rank = int(down.shape[0])
        alpha = state_dict.get(name + ALPHA)
        ranks[_pattern(part, path)] = rank
        alphas[_pattern(part, path)] = float(alpha) if alpha is not None and float(alpha) else float(rank)
    return {part: (tensors, _config(ranks, alphas)) for part, (tensors, ranks, alphas) in parts.items()}


def _alpha_for(config: dict[str, Any] | None, part: str, path: str, rank: int) -> float:
    if not config:
        return float(rank)
    key = _pattern(part, path)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if key == pattern or key.endswith("." + pattern):
            return float(value)
    if config.get("lora_alpha") is not None:
        return float(config["lora_alpha"])
    return float(rank)


_DOWN_UP = ((".lora_A.weight", ".lora_B.weight"), (".lora.down.weight", ".lora.up.weight"),
            (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"))


def parts_to_kohya(parts: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any] | None]],
                   meta: dict[str, str] | None = None, base: str | None = None,
                   fallback: str | None = None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    sdxl = parts_are_sdxl(parts, meta, base, fallback)
    for part, (tensors, config) in parts.items():
        for key, value in tensors.items():
            for down, up in _DOWN_UP:
                if key.endswith(down):
                    path = key[: -len(down)]
                    if path + up not in tensors:
                        raise LoraToolError(f"{key} has no matching {up.lstrip('.')}")
                    name = path_to_kohya(part, path, sdxl)
                    out[name + DOWN] = value
                    out[name + UP] = tensors[path + up]
                    alpha = tensors.get(path + ".alpha")
                    out[name + ALPHA] = (alpha.float() if alpha is not None else
                                         torch.tensor(_alpha_for(config, part, path, int(value.shape[0]))))
                    break
            else:
                if not key.endswith((".lora_B.weight", ".lora.up.weight", ".lora_linear_layer.up.weight", ".alpha")):
                    raise LoraToolError(f"{key!r} is not a LoRA tensor this tool knows")
    return out


def _split_prefixed(state_dict: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any]:
    config = json.loads(meta[META_KEY]) if meta.get(META_KEY) else {}
    parts: dict[str, Any] = {}
    for key, value in state_dict.items():
        part, _, rest = key.partition(".")
        if part not in PART_NAMES:
            raise LoraToolError(f"{key!r}: expected a unet., text_encoder. or text_encoder_2. key")
        tensors, _ = parts.setdefault(part, ({}, None))
        tensors[rest] = value
    for part in parts:
        sub = {k.removeprefix(part + "."): v for k, v in config.items() if k.startswith(part + ".")}
        parts[part] = (parts[part][0], sub or None)
    return parts


def load_as_kohya(path: Path, base: str | None = None, *,
                  fallback: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Any supported file or peft folder, as a kohya state dict (+ its metadata); `base` ("sdxl" or
    "sd", the user's --base) says the family of a diffusers/peft file whose names and shapes cannot;
    `fallback` is the same from the base model a tool applies it to (bake). Errors name the file."""
    try:
        return _load_as_kohya(Path(path), base, fallback)
    except LoraToolError as error:
        if error.path is None:
            error.path = Path(path)
        raise


def _load_as_kohya(path: Path, base: str | None,
                   fallback: str | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.is_dir():
        parts, family = {}, {}
        for part in PART_NAMES:
            file = path / part / PEFT_WEIGHTS
            if file.is_file():
                tensors, meta = load_lora(file)
                parts[part] = (tensors, json.loads(meta[META_KEY]) if meta.get(META_KEY) else None)
                family.update({k: v for k, v in meta.items() if k in ("modelspec.architecture", FAMILY_KEY)})
        if not parts:
            raise LoraToolError(f"no {PEFT_WEIGHTS} under unet/, text_encoder/ or text_encoder_2/", path=path,
                                hint="give a LoRA file or a folder written by `lora convert --to peft`")
        return parts_to_kohya(parts, family, base, fallback), {}
    state_dict, meta = load_lora(path)
    style = key_style(list(state_dict))
    if style == "kohya":
        return state_dict, meta
    if style == "diffusers":
        return (parts_to_kohya(_split_prefixed(state_dict, meta), meta, base, fallback),
                {k: v for k, v in meta.items() if k not in (META_KEY, FAMILY_KEY)})
    if style == "peft":
        config = json.loads(meta[META_KEY]) if meta.get(META_KEY) else None
        return parts_to_kohya({"unet": (state_dict, config)}, meta, base, fallback), {}
    raise LoraToolError(f"{style} LoRA files are not supported here", path=path,
                        hint="only LoRA (down/up) files: kohya, diffusers or peft style")


def _atomic_folder(target: Path, fill: Any) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert(src: Path, to: str, target: Path, *, dtype: torch.dtype | None = None, base: str | None = None) -> str:
    """Write `src` in style `to` at `target`; returns the source style. `base` ("sdxl"/"sd") names the
    family of a file whose metadata, names and shapes cannot (see `parts_are_sdxl`)."""
    if to not in STYLES:
        raise LoraToolError(f"unknown style {to!r}", hint="use kohya, diffusers or peft")
    if base is not None and base not in BASES:
        raise LoraToolError(f"unknown base {base!r}", hint="use sdxl or sd")
    try:
        return _convert(Path(src), to, Path(target), dtype=dtype, base=base)
    except LoraToolError as error:  # what is wrong is in the file: say which
        if error.path is None:
            error.path = Path(src)
        raise


def _convert(src: Path, to: str, target: Path, *, dtype: torch.dtype | None, base: str | None) -> str:
    state_dict, meta = load_as_kohya(src, base)
    if src.is_dir():
        source_style = "peft"
    elif src.suffix.lower() == ".safetensors":
        source_style = key_style(list(read_header(src).tensors))
    else:  # a .ckpt/.pt (read with weights_only by load_lora)
        source_style = key_style(list(load_lora(src)[0]))
    sdxl = family_of(shapes_of(state_dict), meta, base)
    if sdxl:  # SDXL's kohya names take the original layout, as sd-scripts writes and webui reads them
        from lora_tui.train.network.weights_style import sdxl_unet_to_original_layout

        state_dict = dict(sdxl_unet_to_original_layout(state_dict))
    # the file says its family in its header, so the way back does not depend on names and shapes
    family = {} if sdxl is None else {FAMILY_KEY: "sdxl" if sdxl else "sd"}
    if sdxl:
        family["modelspec.architecture"] = f"{SDXL_ARCHITECTURE}/lora"
    if to == "kohya":
        save_lora(target, state_dict, {**meta, **family}, dtype=dtype)
        return source_style
    parts = kohya_to_parts(state_dict)
    if to == "diffusers":
        tensors = {f"{part}.{k}": v for part, (sd, _) in parts.items() for k, v in sd.items()}
        config = {f"{part}.{k}": v for part, (_, cfg) in parts.items() for k, v in cfg.items()}
        keep = {**family, **{k: v for k, v in meta.items() if k.startswith(("ss_", "modelspec."))}}
        save_lora(target, tensors, {**keep, "format": "pt", META_KEY: json.dumps(config, sort_keys=True)},
                  dtype=dtype)
        return source_style

    def fill(folder: Path) -> None:
        for part, (sd, cfg) in parts.items():
            (folder / part).mkdir()
            save_lora(folder / part / PEFT_WEIGHTS, sd,
                      {**family, "format": "pt", META_KEY: json.dumps(cfg, sort_keys=True)}, dtype=dtype)
            (folder / part / "adapter_config.json").write_text(
                json.dumps({**cfg, "peft_type": "LORA"}, indent=2, sort_keys=True), encoding="utf-8")

    _atomic_folder(target, fill)
    return source_style

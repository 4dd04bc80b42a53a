"""`lora-tui lora merge` and `lora-tui lora bake`.

merge: the weighted sum of the LoRAs' deltas (ratioᵢ · scaleᵢ · upᵢ·downᵢ per module, a module
missing from a file counting as zero), re-factored by SVD to rank --dim, as sd-scripts'
networks/svd_merge_lora.py does; alpha = the new rank, so up = U·S carries the strength. The sum of
products is itself one product of stacked factors, so the SVD runs on r₁+r₂+… columns
(factors.factored_svd), not on the full matrix. sd-scripts also clamps U and Vh at their 0.99
quantile; that is lossy and off by default here (--clamp-quantile 0.99 to match it).

bake: the LoRA merged into the base model's weights at --weight and the whole model written as one
original-layout .safetensors checkpoint (what webui loads); SD1/SD2 and SDXL bases.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lora_tui.train.lora_tools.factors import Factors, LoraToolError, factored_svd, split_modules, to_factors


def merge(loras: list[Mapping[str, torch.Tensor]], ratios: list[float], *, dim: int, conv_dim: int | None = None,
          clamp_quantile: float | None = None, device: str | None = None,
          paths: list[Path] | None = None, metas: list[Mapping[str, str]] | None = None) -> dict[str, Factors]:
    if len(loras) != len(ratios):
        raise LoraToolError(f"{len(loras)} files but {len(ratios)} ratios", hint="give one ratio per file")
    if dim < 1:
        raise LoraToolError("--dim must be at least 1")
    _same_family(loras, paths, metas)
    dev = torch.device(device or "cpu")
    split = [split_modules(sd, (paths or [None] * len(loras))[i]) for i, sd in enumerate(loras)]
    names = list(dict.fromkeys(n for modules in split for n in modules))
    out: dict[str, Factors] = {}
    with torch.no_grad():
        for name in names:
            present = [(modules[name], ratio) for modules, ratio in zip(split, ratios) if name in modules]
            first = present[0][0]
            shapes = {(tuple(f.up.shape[:1]), tuple(f.down.shape[1:])) for f, _ in present}
            if len(shapes) > 1:
                raise LoraToolError(f"{name} has different shapes in the files",
                                    hint="merge LoRAs made for the same base model architecture")
            ups, downs = [], []
            for f, ratio in present:
                up, down = f.matrices()
                ups.append(up * (ratio * f.scale))
                downs.append(down)
            u, s, vh = factored_svd(torch.cat(ups, 1).to(dev), torch.cat(downs, 0).to(dev))
            rank = min((conv_dim or dim) if first.conv else dim, len(s))
            if clamp_quantile:
                u_r, vh_r = u[:, :rank] * s[:rank], vh[:rank]
                dist = torch.cat([u_r.flatten(), vh_r.flatten()])
                hi = torch.quantile(dist.abs() if dist.numel() < 2**24 else dist[: 2**24].abs(), clamp_quantile)
                u_r, vh_r = u_r.clamp(-hi, hi), vh_r.clamp(-hi, hi)
                up_m = u_r.reshape(u_r.shape[0], rank, 1, 1) if first.conv else u_r
                down_m = vh_r.reshape(rank, *first.down.shape[1:]) if first.conv else vh_r
                out[name] = Factors(name, down_m.cpu().contiguous(), up_m.cpu().contiguous(), float(rank))
            else:
                out[name] = to_factors(name, u.cpu(), s.cpu(), vh.cpu(), rank, float(rank), first)
    return out


def _same_family(loras: list[Mapping[str, torch.Tensor]], paths: list[Path] | None,
                 metas: list[Mapping[str, str]] | None = None) -> None:
    """SD1/SD2 and SDXL LoRAs share no module names, so their "merge" would be a union of both: refuse it;
    the same for a LoRA of another family (Flux, SD3…, said by its metadata or names) beside an SD one."""
    from lora_tui.core.lora_arch import classify, shapes_of
    from lora_tui.train.network.sdxl_names import family_words

    names = [p.name for p in paths] if paths else [f"LoRA {n + 1}" for n in range(len(loras))]
    verdicts = [classify(shapes_of(sd), (metas or [{}] * len(loras))[i]) for i, sd in enumerate(loras)]
    foreign = [i for i, v in enumerate(verdicts) if v.foreign]
    if foreign and len(foreign) < len(loras):
        i = foreign[0]
        raise LoraToolError(f"{names[i]}: {verdicts[i].reason()}, unlike the others", path=paths[i] if paths else None,
                            hint="merge LoRAs made for the same base model architecture")
    families = [None if v.is_sdxl is None else ("sdxl" if v.is_sdxl else "sd") for v in verdicts]
    known = [(i, f) for i, f in enumerate(families) if f is not None]
    for i, family in known[1:]:
        if family != known[0][1]:
            raise LoraToolError(f"{names[i]} is an {family_words(family)} LoRA but {names[known[0][0]]} is "
                                f"{family_words(known[0][1])}", path=paths[i] if paths else None,
                                hint="merge LoRAs made for the same base model architecture")


def merge_metadata(paths: list[Path], ratios: list[float], dim: int, metas: list[Mapping[str, str]]) -> dict[str, str]:
    """Keep the first file's facts (base model, v2) and say what was merged."""
    meta = {k: v for k, v in (metas[0] if metas else {}).items() if k.startswith(("ss_", "modelspec."))}
    sources = ", ".join(f"{p.name}×{r:g}" for p, r in zip(paths, ratios))
    meta["ss_training_comment"] = f"merged by lora-tui from {sources} at rank {dim}"
    meta["ss_network_dim"] = str(dim)
    meta["ss_network_alpha"] = str(float(dim))
    meta.pop("sshs_model_hash", None)
    meta.pop("sshs_legacy_hash", None)
    return meta


def bake(model: Path, lora: Path, weight: float, target: Path, *, dtype: torch.dtype | None = None) -> Path:
    """Merge `lora` at `weight` into `model` and write a single-file checkpoint at `target`.

    The module configs travel in the header (`lora_tui.configs`, as make-tiny-model writes them), so
    our own loader rebuilds even a non-standard model from the file; webui ignores the key.
    """
    import json

    from safetensors.torch import save as save_bytes

    from lora_tui.core.model_family import is_sdxl
    from lora_tui.train.lora_tools.convert import load_as_kohya
    from lora_tui.train.model.load import CONFIGS_METADATA_KEY, load_base_model
    from lora_tui.train.model.tiny import _configs_of, ldm_state_dict
    from lora_tui.train.network.file import _write_atomically
    from lora_tui.train.network.lora import LoRANetwork

    # a diffusers/peft file that cannot say its family takes the base model's (a mismatch is caught on load)
    state_dict, _ = load_as_kohya(lora, fallback="sdxl" if is_sdxl(model) else "sd")
    if is_sdxl(model):
        return _bake_sdxl(model, lora, state_dict, weight, target, dtype=dtype)
    base = load_base_model(model)
    network = LoRANetwork.from_weights(state_dict, base.text_encoder, base.unet, multiplier=weight)
    network.merge_into_base()
    modules = {"unet": base.unet, "vae": base.vae, "text_encoder": base.text_encoder}
    state = ldm_state_dict(base.unet, base.vae, base.text_encoder, v2=base.v2)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": "pt", "lora_tui.baked": f"{lora.name} at {weight:g} into {base.source.name}",
            CONFIGS_METADATA_KEY: json.dumps(_configs_of(modules))}
    blob = save_bytes(state, meta)
    _write_atomically(target, lambda f: f.write(blob))
    return target


def _bake_sdxl(model: Path, lora: Path, state_dict: Mapping[str, torch.Tensor], weight: float, target: Path, *,
               dtype: torch.dtype | None) -> Path:
    """`bake` for an SDXL base: both text encoders and the U-Net get the delta; written in SDXL's original layout."""
    import json

    from safetensors.torch import save as save_bytes

    from lora_tui.train.model.load import CONFIGS_METADATA_KEY
    from lora_tui.train.model.sdxl_load import load_sdxl_model
    from lora_tui.train.model.tiny_sdxl import sdxl_ldm_state_dict
    from lora_tui.train.network.file import _write_atomically
    from lora_tui.train.network.lora import LoRANetwork

    base = load_sdxl_model(model)
    LoRANetwork.from_weights(dict(state_dict), base.text_encoders, base.unet, multiplier=weight).merge_into_base()
    modules = {"unet": base.unet, "vae": base.vae, "text_encoder": base.text_encoders[0],
               "text_encoder_2": base.text_encoders[1]}
    state = sdxl_ldm_state_dict(modules)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    # the configs travel in the header as make-tiny-model writes them, so a non-standard base reloads
    configs = {name: {k: v for k, v in dict(modules[name].config).items() if not k.startswith("_")}
               for name in ("unet", "vae")}
    configs |= {name: modules[name].config.to_diff_dict() for name in ("text_encoder", "text_encoder_2")}
    meta = {"format": "pt", "lora_tui.baked": f"{lora.name} at {weight:g} into {base.source.name}",
            "modelspec.architecture": "stable-diffusion-xl-v1-base",
            CONFIGS_METADATA_KEY: json.dumps(configs, default=list)}
    blob = save_bytes(state, meta)
    _write_atomically(target, lambda f: f.write(blob))
    return target

"""Tiny random SDXL models: SDXL's topology with a handful of channels, for CPU tests and trials.

Kept to SDXL 1.0 base's shape where it matters for loading, key names and LoRA targets: three U-Net
levels (no attention at the first, cross-attention with 1 and 2 transformer blocks at the next two,
like SDXL's 1/2/10), two layers per down block, linear projections, the `text_time` added embedding
(pooled text + six size numbers), two text encoders (CLIP-L style with quick_gelu, and an OpenCLIP
bigG style encoder with a text projection) whose hidden states are concatenated for cross-attention,
and SDXL's VAE scaling factor. `lora-tui make-tiny-model DIR --sdxl [--single-file]` calls
`make_tiny_sdxl`. The same seed gives the same weights in both forms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lora_tui.train.model import ldm_convert as lc
from lora_tui.train.model import load as _models  # noqa: F401  (quiets the libraries' progress bars)
from lora_tui.train.model.tiny import SINGLE_FILE_SUFFIXES, tokenizer_vocab, write_tokenizer

TE1_WIDTH, TE2_WIDTH, TIME_DIM = 16, 32, 8
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def tiny_sdxl_configs() -> dict[str, dict[str, Any]]:
    """Configs of the tiny SDXL U-Net, VAE and the two text encoders."""
    unet: dict[str, Any] = {
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [8, 16, 32], "norm_num_groups": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 1, 2], "attention_head_dim": [2, 2, 4],
        "cross_attention_dim": TE1_WIDTH + TE2_WIDTH, "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": TIME_DIM,
        "projection_class_embeddings_input_dim": TE2_WIDTH + 6 * TIME_DIM,
    }
    vae = {
        "sample_size": 128, "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
        "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4, "scaling_factor": 0.13025,
        "force_upcast": True,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    vocab = len(tokenizer_vocab())
    common = {"vocab_size": vocab, "num_hidden_layers": 3, "num_attention_heads": 4, "max_position_embeddings": 77,
              "layer_norm_eps": 1e-5, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
              "pad_token_id": vocab - 1}
    te1 = {**common, "hidden_size": TE1_WIDTH, "intermediate_size": 2 * TE1_WIDTH, "projection_dim": TE1_WIDTH,
           "hidden_act": "quick_gelu"}
    te2 = {**common, "hidden_size": TE2_WIDTH, "intermediate_size": 2 * TE2_WIDTH, "projection_dim": TE2_WIDTH,
           "hidden_act": "gelu"}
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2}


def build_tiny_sdxl(seed: int = 0) -> dict[str, torch.nn.Module]:
    """Random tiny SDXL modules; the same seed gives the same weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = tiny_sdxl_configs()
    torch.manual_seed(seed)
    modules: dict[str, torch.nn.Module] = {
        "unet": UNet2DConditionModel(**configs["unet"]),
        "vae": AutoencoderKL(**configs["vae"]),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
        "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"])),
    }
    return {name: module.eval() for name, module in modules.items()}


def sdxl_ldm_state_dict(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The four Diffusers modules as one original-layout SDXL (`conditioner.embedders.*`) state dict."""
    out: dict[str, torch.Tensor] = {}
    unet_sd, vae_sd = modules["unet"].state_dict(), modules["vae"].state_dict()
    te1_sd, te2_sd = modules["text_encoder"].state_dict(), modules["text_encoder_2"].state_dict()
    out.update(lc.to_ldm(unet_sd, lc.unet_key_map(modules["unet"].config, unet_sd)))
    out.update(lc.to_ldm(vae_sd, lc.vae_key_map(modules["vae"].config, vae_sd)))
    out.update(lc.to_ldm(te1_sd, lc.sdxl_text_encoder_key_map(te1_sd, second=False)))
    out.update(lc.to_ldm(te2_sd, lc.sdxl_text_encoder_key_map(te2_sd, second=True)))
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def scheduler_config() -> dict[str, Any]:
    """SDXL 1.0 base's scheduler (Euler, SD's scaled-linear betas)."""
    return {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
            "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear",
            "use_karras_sigmas": False, "sample_max_value": 1.0, "set_alpha_to_one": False,
            "skip_prk_steps": True, "clip_sample": False}


def model_index() -> dict[str, Any]:
    import diffusers

    return {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": diffusers.__version__,
            "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}


def _write_diffusers(dest: Path, modules: dict[str, torch.nn.Module]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        module.save_pretrained(str(dest / name), safe_serialization=True)
    write_tokenizer(dest / "tokenizer")
    write_tokenizer(dest / "tokenizer_2")
    (dest / "scheduler").mkdir(exist_ok=True)
    (dest / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(), indent=2))
    (dest / "model_index.json").write_text(json.dumps(model_index(), indent=2), encoding="utf-8")


def make_tiny_sdxl(dest: Path, *, single_file: bool = False, seed: int = 0) -> Path:
    """Write a tiny random SDXL model; returns what a project's model path should be.

    Same forms as `tiny.make_tiny_model`: a Diffusers folder; or with `single_file`, `dest` itself
    when named `*.safetensors` (tokenizers in `<stem>.tokenizer/` and `<stem>.tokenizer_2/` beside it),
    else `dest/model.safetensors` with `dest/tokenizer/` and `dest/tokenizer_2/`. The single file
    carries its (tiny) configs in its metadata, since SDXL's shipped configs do not fit it.
    """
    from safetensors.torch import save_file

    from lora_tui.train.model.load import CONFIGS_METADATA_KEY

    dest = Path(dest)
    modules = build_tiny_sdxl(seed)
    if not single_file:
        _write_diffusers(dest, modules)
        return dest
    if dest.suffix in SINGLE_FILE_SUFFIXES:
        if dest.suffix != ".safetensors":
            raise ValueError("tiny SDXL single files are written as .safetensors")
        target = dest
        tokenizers = (dest.with_name(f"{dest.stem}.tokenizer"), dest.with_name(f"{dest.stem}.tokenizer_2"))
    else:
        target, tokenizers = dest / "model.safetensors", (dest / "tokenizer", dest / "tokenizer_2")
    target.parent.mkdir(parents=True, exist_ok=True)
    stored = json.dumps(tiny_sdxl_configs())
    save_file(sdxl_ldm_state_dict(modules), str(target),
              metadata={CONFIGS_METADATA_KEY: stored, "format": "pt",
                        "modelspec.architecture": "stable-diffusion-xl-v1-base"})
    for folder in tokenizers:
        write_tokenizer(folder)
    return target

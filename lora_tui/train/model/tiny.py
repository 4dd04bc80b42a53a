"""Tiny random Stable Diffusion models, so the whole training loop runs on a CPU in seconds.

The models keep SD's topology (four U-Net levels with cross-attention in the first three, a VAE that
downsamples by 8, a CLIP text encoder with 77 positions) with a handful of channels, so every code
path that real models take (key mapping, LoRA targets, latents shapes) is exercised. The tokenizer is
a byte-level CLIP BPE with no merges: every byte is a token, which is enough to tokenize any caption.
`lora-tui make-tiny-model DIR` calls `make_tiny_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lora_tui.train.model import ldm_convert as lc
from lora_tui.train.model import load as _models  # noqa: F401  (quiets the libraries' progress bars)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def tiny_configs(v2: bool = False) -> dict[str, dict[str, Any]]:
    """Configs of the tiny U-Net, VAE and text encoder (SD1.5 or SD2.1 topology, few channels)."""
    width = 64 if v2 else 32  # the text encoder's hidden size is the U-Net's cross-attention size
    unet: dict[str, Any] = {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [8, 16, 32, 32], "norm_num_groups": 4, "cross_attention_dim": width,
        # SD's block types, with cross-attention kept only at the 1/4-resolution level: attention
        # over a 64×64 latent dominates a tiny model's step (0.8 s → 0.05 s on 2 CPU cores), and one
        # level still exercises every LoRA target kind (proj_in/out, attn1/attn2, ff).
        "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "attention_head_dim": [2, 4, 4, 4] if v2 else 2, "use_linear_projection": v2,
    }
    vae = {
        "sample_size": 64, "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
        "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4, "scaling_factor": 0.18215,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    vocab = len(tokenizer_vocab())
    text_encoder = {
        "vocab_size": vocab, "hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 77, "projection_dim": width,
        "hidden_act": "gelu" if v2 else "quick_gelu", "layer_norm_eps": 1e-5,
        "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1,
    }
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-in character for each of the 256 byte values, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tokenizer_vocab() -> dict[str, int]:
    """Byte-level CLIP vocab: 256 byte symbols, their end-of-word forms, then start/end of text."""
    symbols = _bytes_to_unicode()
    tokens = [*symbols, *(s + "</w>" for s in symbols), BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def write_tokenizer(folder: Path) -> Path:
    """Write the tiny tokenizer (vocab.json, merges.txt, tokenizer_config.json) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tokenizer_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": BOS, "eos_token": EOS,
              "unk_token": EOS, "pad_token": EOS, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder


def build_tiny_modules(v2: bool = False, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Random tiny U-Net, VAE and text encoder; the same seed gives the same weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = tiny_configs(v2)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**configs["unet"])
    vae = AutoencoderKL(**configs["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval()}


def ldm_state_dict(unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module, *,
                   v2: bool) -> dict[str, torch.Tensor]:
    """The three Diffusers modules as one original-layout (single-file) state dict."""
    out: dict[str, torch.Tensor] = {}
    unet_sd, vae_sd, te_sd = unet.state_dict(), vae.state_dict(), text_encoder.state_dict()
    out.update(lc.to_ldm(unet_sd, lc.unet_key_map(unet.config, unet_sd)))
    out.update(lc.to_ldm(vae_sd, lc.vae_key_map(vae.config, vae_sd)))
    out.update(lc.to_ldm(te_sd, lc.text_encoder_key_map(te_sd, v2=v2)))
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _write_diffusers(dest: Path, modules: dict[str, torch.nn.Module], v_parameterization: bool) -> None:
    from diffusers import DDPMScheduler

    dest.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        module.save_pretrained(str(dest / name), safe_serialization=True)
    write_tokenizer(dest / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  clip_sample=False, prediction_type="v_prediction" if v_parameterization else "epsilon",
                  steps_offset=1).save_pretrained(str(dest / "scheduler"))  # SD's own scheduler configs say 1
    import diffusers

    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (dest / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def write_single_file(path: Path, modules: dict[str, torch.nn.Module], *, v2: bool,
                      configs: dict[str, Any] | None = None) -> Path:
    """Write modules as an original-layout `.safetensors` (configs in metadata) or `.ckpt`.

    The configs travel inside the file (`lora_tui.configs`) because a tiny model's dimensions cannot
    be read back from SD's shipped configs; real checkpoints have no such key and use those.
    """
    from lora_tui.train.model.load import CONFIGS_METADATA_KEY

    state = ldm_state_dict(modules["unet"], modules["vae"], modules["text_encoder"], v2=v2)
    stored = json.dumps(configs if configs is not None else _configs_of(modules))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={CONFIGS_METADATA_KEY: stored, "format": "pt"})
    else:
        torch.save({"state_dict": state, CONFIGS_METADATA_KEY: stored}, str(path))
    return path


def _configs_of(modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    configs: dict[str, Any] = {}
    for name in ("unet", "vae"):
        configs[name] = {k: v for k, v in dict(modules[name].config).items() if not k.startswith("_")}
    configs["text_encoder"] = modules["text_encoder"].config.to_diff_dict()
    return json.loads(json.dumps(configs, default=list))


def make_tiny_model(dest: Path, *, v2: bool = False, single_file: bool = False, seed: int = 0,
                    v_parameterization: bool = False) -> Path:
    """Write a tiny random SD model and return what `load_base_model` should be given.

    - `single_file=False`: `dest` becomes a Diffusers folder (model_index.json, scheduler/, unet/,
      vae/, text_encoder/, tokenizer/, weights as safetensors).
    - `single_file=True` and `dest` named `*.safetensors`/`*.ckpt`: that file, in the original SD key
      layout, plus the tokenizer in `<stem>.tokenizer/` beside it (where the loader looks).
    - `single_file=True` otherwise: `dest/model.safetensors` plus `dest/tokenizer/`.
    `v_parameterization` only sets the Diffusers scheduler's prediction_type (the trainer's flag rules).
    The same `seed` gives the same weights in every form, so the forms can be compared.
    """
    dest = Path(dest)
    modules = build_tiny_modules(v2=v2, seed=seed)
    if not single_file:
        _write_diffusers(dest, modules, v_parameterization)
        return dest
    if dest.suffix in SINGLE_FILE_SUFFIXES:
        target, tokenizer_dir = dest, dest.with_name(f"{dest.stem}.tokenizer")
    else:
        target, tokenizer_dir = dest / "model.safetensors", dest / "tokenizer"
    write_single_file(target, modules, v2=v2, configs=tiny_configs(v2))
    write_tokenizer(tokenizer_dir)
    return target

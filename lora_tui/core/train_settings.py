"""The train_network.py options the built-in trainer implements: type, effective default, range, help.

One table, read by everyone who needs a fact about a training option: ``lora-tui check`` and the
config screen (through ``train_args.validate`` when a project loads or a value is saved), ``lora-tui
config`` (the steps it prints), the trainer (``train.loop.args`` fills unset options from here and
refuses out-of-range values with the same words), and ``doctor`` (its disk estimate). No call site
writes ``args.x or 4``: an unset option resolves to its row's default, which is the value the
trainer really uses — sd-scripts' argparse default, or what sd-scripts does with ``None`` when that
differs (``network_dim`` None means 4 in networks.lora; ``optimizer_type`` "" means AdamW).

The type is sd-scripts' own (``data/train_network_args.json``, read off its parser); a test checks
that every row exists there. Options missing from the table are sd-scripts-only: the built-in trainer
refuses them unless they hold sd-scripts' default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lora_tui.core.schema import out_of_range

# Absurd-value guards: past these the run would never end (or the steps math would not), so they
# are almost certainly a typo (1e18 repeats). 100 million steps at 20 steps/s is two months.
MAX_STEPS = 100_000_000
MAX_EPOCHS = 1_000_000


@dataclass(frozen=True)
class Setting:
    """One option: its effective default, its inclusive bounds (None: open) and a one-line help."""

    name: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    sdxl_only: bool = False  # sdxl_train_network.py's own option; the built-in trainer refuses it for now

    @property
    def kind(self) -> str:
        """sd-scripts' type for it: int, float, flag, str, choice or list (from its parser)."""
        from lora_tui.core.train_args import known_args

        return str(known_args()[self.name]["kind"])

    def range_text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:,} to {self.hi:,}"
        if self.lo is not None:
            return f"{self.lo} or more"
        return f"{self.hi} or less" if self.hi is not None else "any"


def _s(name: str, default: Any, text: str, lo: float | None = None, hi: float | None = None) -> Setting:
    return Setting(name, default, text, lo, hi)


def _xl(name: str, default: Any, text: str) -> Setting:
    return Setting(name, default, text, sdxl_only=True)


_ROWS = (
    # model
    _s("pretrained_model_name_or_path", None, "base model: a .safetensors/.ckpt file, a Diffusers folder, or "
       "lora-tui:tiny-sd15 (a tiny random test model)"),
    _s("v2", False, "the base model is SD2.x"),
    _s("v_parameterization", False, "the base model predicts v (SD2.x 768-v)"),
    _s("tokenizer_cache_dir", None, "folder holding the CLIP tokenizer as sd-scripts caches it"),
    _s("vae", None, "a VAE to use instead of the model's own"),
    # output and saving
    _s("output_dir", None, "where LoRA files go (lora-tui: the run's output/ folder)"),
    _s("output_name", "last", "file name of the LoRA, without extension"),
    _s("save_model_as", "safetensors", "file format of the saved LoRA"),
    _s("save_precision", None, "dtype of the saved weights (unset: float32)"),
    _s("save_every_n_steps", None, "save a LoRA every N steps", 1),
    _s("save_every_n_epochs", None, "save a LoRA every N epochs", 1),
    _s("save_last_n_steps", None, "keep only the saves of the last N steps", 0),
    _s("save_last_n_epochs", None, "keep only the last N epoch saves", 0),
    _s("save_state", False, "save the optimizer state with every save (to resume)"),
    _s("save_state_on_train_end", False, "save the optimizer state at the end"),
    _s("resume", None, "a saved state folder to continue from"),
    _s("no_metadata", False, "write only minimal ss_* metadata into the LoRA"),
    _s("training_comment", None, "a comment stored in the LoRA's metadata"),
    _s("metadata_title", None, "modelspec title"),
    _s("metadata_author", None, "modelspec author"),
    _s("metadata_description", None, "modelspec description"),
    _s("metadata_license", None, "modelspec license"),
    _s("metadata_tags", None, "modelspec tags, comma separated"),
    # length of training
    _s("max_train_steps", 1600, "optimizer steps to train (ignored when max_train_epochs is set)", 1, MAX_STEPS),
    _s("max_train_epochs", None, "epochs to train; overrides max_train_steps", 1, MAX_EPOCHS),
    _s("train_batch_size", 1, "images per batch (a dataset's batch_size wins)", 1),
    _s("gradient_accumulation_steps", 1, "batches per optimizer step", 1),
    # precision and memory
    _s("mixed_precision", "no", "compute dtype: no, fp16 or bf16"),
    _s("full_fp16", False, "keep the LoRA weights in fp16 too (needs mixed_precision = fp16)"),
    _s("full_bf16", False, "keep the LoRA weights in bf16 too (needs mixed_precision = bf16)"),
    _s("gradient_checkpointing", False, "recompute activations: less memory, slower steps"),
    _s("xformers", False, "sd-scripts' xformers attention (the built-in trainer uses torch SDPA)"),
    _s("sdpa", False, "torch scaled-dot-product attention"),
    _s("mem_eff_attn", False, "sd-scripts' memory-efficient attention (built-in: torch SDPA)"),
    _s("no_half_vae", False, "run the VAE in float32 (SDXL's VAE overflows in fp16: on for SDXL)"),
    _s("clip_skip", None, "use the text encoder's N-th layer from the end", 1),
    _s("max_token_length", None, "caption length in CLIP tokens: 75 (unset), 150 or 225"),
    # SDXL only (sdxl_train_network.py; sd-scripts backend)
    _xl("cache_text_encoder_outputs", False, "SDXL: encode each caption once with both text encoders (needs "
        "network_train_unet_only; no caption shuffle/dropout)"),
    _xl("cache_text_encoder_outputs_to_disk", False, "SDXL: keep the text-encoder outputs in .npz files beside "
        "the images (turns cache_text_encoder_outputs on)"),
    _xl("disable_mmap_load_safetensors", False, "SDXL: read the model file without mmap (faster under WSL)"),
    _s("torch_compile", False, "compile the U-Net with torch.compile"),
    _s("dynamo_backend", "inductor", "torch.compile backend"),
    # network
    _s("network_module", None, "the network to train; the built-in trainer implements networks.lora"),
    _s("network_dim", 4, "LoRA rank", 1),
    _s("network_alpha", 1, "LoRA alpha: the update is scaled by alpha / dim"),
    _s("network_dropout", None, "dropout on the LoRA's down projection", 0.0, 1.0),
    _s("network_args", None, "extra network options: conv_dim=…, conv_alpha=…, dropout=…"),
    _s("network_weights", None, "a LoRA file to continue training from"),
    _s("dim_from_weights", False, "take the rank from network_weights"),
    _s("network_train_unet_only", False, "train only the U-Net's LoRA"),
    _s("network_train_text_encoder_only", False, "train only the text encoder's LoRA"),
    # optimizer and schedule
    _s("optimizer_type", "AdamW", "AdamW, AdamW8bit, Lion, SGDNesterov, Adafactor, Prodigy, DAdaptation…"),
    _s("optimizer_args", None, "optimizer options as key=value (Python literals)"),
    _s("learning_rate", 2e-6, "base learning rate (far too low for a LoRA: set 1e-4)", 0.0),
    _s("unet_lr", None, "learning rate of the U-Net's LoRA (unset: learning_rate)", 0.0),
    _s("text_encoder_lr", None, "learning rate of the text encoder's LoRA (unset: learning_rate)", 0.0),
    _s("lr_scheduler", "constant", "learning-rate schedule"),
    _s("lr_warmup_steps", 0, "warm-up steps (an integer) or fraction of all steps (a float below 1)", 0),
    _s("lr_scheduler_num_cycles", 1, "restarts of cosine_with_restarts", 1),
    _s("lr_scheduler_power", 1, "power of the polynomial schedule"),
    _s("max_grad_norm", 1.0, "gradient clipping norm (0: off)", 0.0),
    _s("seed", None, "random seed (unset: a random one, recorded in the run)", 0, 2**32 - 1),
    _s("noise_offset", None, "noise offset (brighter darks and darker brights)", 0.0),
    _s("min_snr_gamma", None, "min-SNR loss weighting gamma (5 is common)", 0.0),
    _s("prior_loss_weight", 1.0, "loss weight of regularization images", 0.0),
    # data
    _s("cache_latents", False, "encode every image once before training (no color_aug/random_crop)"),
    _s("cache_latents_to_disk", False, "cache latents in .npz files next to the images"),
    _s("vae_batch_size", 1, "images per VAE batch while caching latents", 1),
    _s("max_data_loader_n_workers", 8, "data-loader worker processes (capped by the CPU count)", 0),
    _s("persistent_data_loader_workers", False, "keep data-loader workers between epochs"),
    # samples
    _s("sample_every_n_steps", None, "generate sample images every N steps", 1),
    _s("sample_every_n_epochs", None, "generate sample images every N epochs", 1),
    _s("sample_prompts", None, "prompt file for sample images"),
    _s("sample_sampler", "ddim", "sampler for sample images"),
    _s("sample_at_first", False, "generate samples before the first step"),
    # logging and processes
    _s("log_with", None, "tensorboard (the built-in trainer's only tracker)"),
    _s("logging_dir", None, "folder for tensorboard logs"),
    _s("log_prefix", None, "prefix of the tensorboard run name"),
    _s("log_tracker_name", "network_train", "tensorboard run name"),
    _s("dataset_config", None, "the dataset TOML (lora-tui writes configs/<name>.toml)"),
    _s("config_file", None, "a TOML file of these options"),
    _s("lowram", False, "load models straight to the GPU"),
    _s("highvram", False, "keep everything on the GPU"),
    _s("console_log_level", None, "log level of the console"),
    _s("console_log_simple", False, "plain console logging"),
    _s("ddp_timeout", None, "multi-GPU timeout in minutes", 1),
    _s("ddp_gradient_as_bucket_view", False, "DDP option"),
    _s("ddp_static_graph", False, "DDP option"),
)

SETTINGS: dict[str, Setting] = {row.name: row for row in _ROWS}


def defaults() -> dict[str, Any]:
    """Every supported option at its effective default."""
    return {name: row.default for name, row in SETTINGS.items()}


def effective(values: Mapping[str, Any], name: str) -> Any:
    """``values[name]`` when set (not None), else the option's effective default."""
    value = values.get(name)
    return SETTINGS[name].default if value is None else value


def range_problem(name: str, value: Any) -> str | None:
    """Why a well-typed value is out of bounds for option ``name``, or None (also for other names)."""
    row = SETTINGS.get(name)
    return None if row is None else out_of_range(value, row.lo, row.hi)

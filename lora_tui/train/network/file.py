"""Reading and writing LoRA files the way kohya-ss/sd-scripts does (reference §5.4).

* `.safetensors`: every metadata value is a string; `sshs_model_hash` / `sshs_legacy_hash` are
  precomputed like sd-scripts (for sd-webui-additional-networks, which otherwise hashes on
  indexing); the write is atomic so a monitor or a crash never sees half a file.
* `.ckpt` / `.pt`: a plain `torch.save` of the state dict, no metadata (as sd-scripts); read back
  only with `torch.load(weights_only=True)`, so a hostile pickle cannot run code.
* `build_metadata` turns a plain dict of training facts into the `ss_*` and `modelspec.*` keys.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from lora_tui import __version__
from lora_tui.core.errors import TrainError
from lora_tui.train.network import st_single

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")

# sd-webui-additional-networks' legacy hash: SHA-256 of 64 KiB read at 1 MiB into the file.
_LEGACY_OFFSET = 0x100000
_LEGACY_LENGTH = 0x10000


def safetensors_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) exactly as sd-scripts' precalculate_safetensors_hashes.

    Both are taken over the file that `safetensors.torch.save` makes from the tensors and only the
    `ss_*` metadata (user-editable keys are left out so editing them keeps the hash): the model
    hash is the SHA-256 hex of everything after the header; the legacy hash is the first 8 hex
    chars of the SHA-256 of bytes [1 MiB, 1 MiB + 64 KiB) of that file (empty for small files,
    so most LoRAs under 1 MiB share "e3b0c442").
    """
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    blob = safetensors.torch.save(dict(tensors), ss_only)
    header_len = int.from_bytes(blob[:8], "little")
    model_hash = hashlib.sha256(blob[8 + header_len:]).hexdigest()
    legacy_hash = hashlib.sha256(blob[_LEGACY_OFFSET:_LEGACY_OFFSET + _LEGACY_LENGTH]).hexdigest()[:8]
    return model_hash, legacy_hash


def _write_atomically(path: Path, write: Any) -> None:
    """Write via a temp file in the same folder, fsync, then os.replace over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every filesystem lets a folder be opened
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_lora(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None,
              *, dtype: torch.dtype | None = None) -> dict[str, str]:
    """Save a LoRA state dict; returns the metadata written (with the sshs hashes), {} for .ckpt/.pt.

    Tensors are detached, moved to the CPU, cast to `dtype` (sd-scripts' --save_precision) and
    made contiguous first. Metadata must be str → str: safetensors readers (webui, ComfyUI) expect
    strings and a non-str value is a bug in the caller, so it raises TypeError.
    """
    path = Path(path)
    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu")
        if dtype is not None:
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    suffix = path.suffix.lower()
    if suffix != SAFETENSORS_SUFFIX:
        if suffix not in PICKLE_SUFFIXES:
            raise TrainError(f"unknown LoRA file type {suffix or '(none)'}", path=path,
                             hint="use .safetensors (or .ckpt/.pt)")
        _write_atomically(path, lambda f: torch.save(tensors, f))
        return {}
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"LoRA metadata must be str → str; {key!r} has {type(value).__name__}")
    if not st_single.supported():
        meta["sshs_model_hash"], meta["sshs_legacy_hash"] = safetensors_hashes(tensors, meta)
        blob = safetensors.torch.save(tensors, meta)
        _write_atomically(path, lambda f: f.write(blob))
        return meta
    layout = st_single.layout(tensors)  # serialised once, from the tensors' memory (see st_single)
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = st_single.hashes(layout, meta)
    _write_atomically(path, lambda f: st_single.write(f, layout, meta))
    return meta


def load_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict on the CPU, metadata) of a LoRA file; any unusable file is a one-line TrainError.

    A .ckpt/.pt is unpickled only with `weights_only=True`: a file that needs anything beyond
    tensors and plain containers is refused instead of being allowed to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainError("LoRA file not found", path=path, hint="check --network_weights")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                state_dict = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        except (OSError, ValueError, safetensors.SafetensorError) as exc:
            raise TrainError(f"not a readable .safetensors file: {exc}", path=path) from exc
        return state_dict, metadata
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        if not _looks_like_torch_save(path):
            raise TrainError("not a PyTorch checkpoint (neither a zip archive nor a pickle)", path=path,
                             hint="give a LoRA .safetensors, .ckpt or .pt file") from exc
        raise TrainError(f"refused to load: the file is not plain tensors ({_pickle_reason(exc)})", path=path,
                         hint="only weights_only pickles are read; convert it to .safetensors with a trusted tool"
                         ) from exc
    if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise TrainError("not a LoRA state dict (expected a mapping of names to tensors)", path=path)
    return dict(loaded), {}



def read_weights(source: str | Path | Mapping[str, torch.Tensor],
                 ) -> tuple[Mapping[str, torch.Tensor], dict[str, str], Path | None]:
    """(state dict, metadata, path) from a LoRA file or an in-memory state dict (no metadata, no path)."""
    if isinstance(source, Mapping):
        return source, {}, None
    state_dict, metadata = load_lora(source)
    return state_dict, metadata, Path(source)

# --- metadata ---------------------------------------------------------------------------------

# ss_* keys sd-scripts' train_network writes on every save; a fact not given is written as "None",
# which is what sd-scripts' str(None) gives for an unset flag.
SS_ALWAYS: tuple[str, ...] = (
    "session_id", "training_started_at", "output_name", "learning_rate", "text_encoder_lr", "unet_lr",
    "num_train_images", "num_reg_images", "num_batches_per_epoch", "num_epochs", "gradient_checkpointing",
    "gradient_accumulation_steps", "max_train_steps", "lr_warmup_steps", "lr_scheduler", "network_module",
    "network_dim", "network_alpha", "network_dropout", "mixed_precision", "full_fp16", "v2", "base_model_version",
    "clip_skip", "max_token_length", "cache_latents", "seed", "lowram", "noise_offset",
    "multires_noise_iterations", "multires_noise_discount", "adaptive_noise_scale", "zero_terminal_snr",
    "training_comment", "optimizer", "max_grad_norm", "caption_dropout_rate", "caption_dropout_every_n_epochs",
    "caption_tag_dropout_rate", "face_crop_aug_range", "prior_loss_weight", "min_snr_gamma", "scale_weight_norms",
    "ip_noise_gamma", "debiased_estimation", "loss_type", "huber_schedule", "huber_c", "sd_model_name",
    "sd_model_hash", "new_sd_model_hash", "vae_name", "vae_hash", "new_vae_hash", "steps", "epoch",
    "training_finished_at",
)
# ss_* keys sd-scripts writes only in some modes (dataset_config or not, given flags): written
# only when the fact is given.
SS_OPTIONAL: tuple[str, ...] = (
    "network_args", "datasets", "tag_frequency", "dataset_dirs", "reg_dataset_dirs", "bucket_info",
    "batch_size_per_device", "total_batch_size", "color_aug", "flip_aug", "random_crop", "shuffle_caption",
    "enable_bucket", "bucket_no_upscale", "min_bucket_reso", "max_bucket_reso", "keep_tokens",
    "num_validation_images", "noise_offset_random_strength", "ip_noise_gamma_random_strength", "huber_scale",
    "fp8_base", "fp8_base_unet", "sd_scripts_commit_hash", "resize_interpolation", "validation_seed",
    "validation_split", "max_validation_steps", "validate_every_n_epochs", "validate_every_n_steps",
)
# Values sd-scripts stores as JSON text rather than str().
SS_JSON: frozenset[str] = frozenset({"network_args", "datasets", "tag_frequency", "dataset_dirs",
                                     "reg_dataset_dirs", "bucket_info"})
# What --no_metadata keeps (sd-scripts' SS_METADATA_MINIMUM_KEYS).
SS_MINIMUM: tuple[str, ...] = ("v2", "base_model_version", "network_module", "network_dim", "network_alpha",
                               "network_args")
# Facts that steer the builder but are not ss_* keys themselves.
CONTROL_FACTS: frozenset[str] = frozenset({"v_parameterization", "resolution", "title", "timestamp", "sdxl"})
SS_DEFAULTS: dict[str, Any] = {"network_module": "networks.lora", "v2": False}

MODELSPEC_VERSION = "1.0.1"
SDXL_ARCHITECTURE = "stable-diffusion-xl-v1-base"  # sai_model_spec.ARCH_SD_XL_V1_BASE
SDXL_BASE_MODEL_VERSION = "sdxl_base_v1-0"  # sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0
# sai_model_spec.determine_implementation: an SDXL LoRA names Stability AI's implementation
SDXL_IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
_ARCHITECTURES = {  # (v2, v_parameterization) → modelspec.architecture base
    (False, False): "stable-diffusion-v1", (False, True): "stable-diffusion-v1",
    (True, False): "stable-diffusion-v2-512", (True, True): "stable-diffusion-v2-768-v",
}


def _as_str(key: str, value: Any) -> str:
    if key in SS_JSON and not isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _resolution(value: Any, v2: bool, v_param: bool, sdxl: bool = False) -> str:
    if value is None:
        side = 1024 if sdxl else 768 if v2 and v_param else 512
        return f"{side}x{side}"
    if isinstance(value, str):
        value = [int(v) for v in value.replace("x", ",").split(",")]
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) == 1:
        value = (value[0], value[0])
    return f"{value[0]}x{value[1]}"


def build_metadata(facts: Mapping[str, Any], *, minimal: bool = False,
                   modelspec: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `ss_*` + `modelspec.*` header of a LoRA file from a plain dict of training facts.

    `facts` keys are sd-scripts' metadata names without the `ss_` prefix (a leading `ss_` is
    accepted): `session_id`, `steps`, `learning_rate`, `optimizer` ("module.Class(k=v,…)"),
    `network_dim`, `network_alpha`, `datasets` (list → JSON), `tag_frequency` (dict → JSON), … —
    see SS_ALWAYS / SS_OPTIONAL. Control facts: `sdxl` (an SDXL LoRA, as sdxl_train_network.py writes
    it; also implied by a `base_model_version` starting "sdxl"), `v_parameterization`, `resolution`
    (int, (w, h) or "w,h"; default 512, 768 for SD2-v, 1024 for SDXL), `title` (default output_name)
    and `timestamp` (of the save, default training_finished_at or now). An unknown fact raises
    ValueError so a typo is not silently dropped. `minimal=True` is sd-scripts' --no_metadata. `modelspec` adds optional
    `modelspec.*` fields (author, description, license, tags, trigger_phrase, usage_hint, …).
    Every value comes back as str, None as "None", like sd-scripts.
    """
    given = {(k[3:] if k.startswith("ss_") else k): v for k, v in facts.items()}
    known = set(SS_ALWAYS) | set(SS_OPTIONAL) | CONTROL_FACTS
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown LoRA metadata fact(s): {', '.join(unknown)}")
    v2 = bool(given.get("v2", False))
    v_param = bool(given.get("v_parameterization", False))
    sdxl = bool(given.pop("sdxl", False)) or str(given.get("base_model_version") or "").startswith("sdxl")
    values = {**SS_DEFAULTS, **given}
    if values.get("base_model_version") is None:
        values["base_model_version"] = SDXL_BASE_MODEL_VERSION if sdxl else "sd_v1" if not v2 else (
            "sd_v2_v" if v_param else "sd_v2")
    if not values.get("network_args"):
        values.pop("network_args", None)  # sd-scripts writes it only when --network_args was given

    keys = [k for k in SS_ALWAYS if not minimal or k in SS_MINIMUM]
    keys += [k for k in SS_OPTIONAL if k in values and (not minimal or k in SS_MINIMUM)]
    metadata = {f"ss_{k}": _as_str(k, values.get(k)) for k in keys}

    timestamp = given.get("timestamp") or given.get("training_finished_at") or time.time()
    title = given.get("title") or given.get("output_name") or f"LoRA@{timestamp}"
    spec: dict[str, str] = {
        "sai_model_spec": MODELSPEC_VERSION,
        "architecture": f"{SDXL_ARCHITECTURE if sdxl else _ARCHITECTURES[(v2, v_param)]}/lora",
        "implementation": SDXL_IMPLEMENTATION if sdxl else "diffusers",
        "title": str(title),
        "resolution": _resolution(given.get("resolution"), v2, v_param, sdxl),
        "date": _dt.datetime.fromtimestamp(int(float(timestamp))).isoformat(),
        "prediction_type": "v" if v_param else "epsilon",
        "implementation_version": f"lora-tui/{__version__}",
    }
    if given.get("clip_skip") is not None:
        spec["encoder_layer"] = str(given["clip_skip"])
    for key, value in (modelspec or {}).items():
        spec[key.removeprefix("modelspec.")] = str(value)
    metadata.update({f"modelspec.{k}": v for k, v in spec.items()})
    return metadata


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save's zip archive (PK) or a legacy pickle (protocol 2+ opcode 0x80)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def _pickle_reason(exc: BaseException) -> str:
    """torch's own reason (the WeightsUnpickler line), not its advice to retry with weights_only=False."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        reason = " ".join(text.split("WeightsUnpickler error:", 1)[1].split())
        return reason.split(". ")[0].rstrip(".") or type(exc).__name__
    return " ".join(text.split()).split(". ")[0] if text.strip() else type(exc).__name__

"""Load a Stable Diffusion 1.x/2.x base model offline: a Diffusers folder or one checkpoint file.

Offline first (DESIGN.md): nothing here touches the network. Diffusers folders load with
`local_files_only=True`; single files are converted with `ldm_convert` using configs shipped in
`model_configs/` (or, for files lora-tui wrote itself, configs stored inside the file); `.ckpt`
files load only with `torch.load(weights_only=True)`, so a pickle that carries code is refused.
Every failure is a one-line `ModelError` naming the file and what to do.

The tokenizer is looked up in this order: `tokenizer_path`; the Diffusers folder's `tokenizer/`;
`tokenizer/` or `<stem>.tokenizer/` next to a single file; sd-scripts' `--tokenizer_cache_dir`
layout; the local Hugging Face cache (`openai/clip-vit-large-patch14` for SD1,
`stabilityai/stable-diffusion-2` subfolder `tokenizer` for SD2).

Why SD1/SD2 single files keep our converter (`ldm_convert`) while SDXL uses diffusers'
`from_single_file` (issue 13 asked for diffusers "unless a measurement or a missing case says
otherwise"; both do, bench/bench_single_file.py and bench/RESULTS.md): on the full-size SD1.5 file
(fp16, 2.1 GB) ours loads in 16.1 s against diffusers' 24.4 s (medians of 3, fresh processes, same
peak memory, +6.4 GB); diffusers refuses checkpoints whose CLIP keys predate transformers'
`text_model.` prefix (`cond_stage_model.transformer.embeddings…`), which ours normalizes; and a pickle
that carries code is, for diffusers, an anonymous "Unable to load weights" where ours says why.
The two agree bit for bit on every file both read (tests/train/test_single_file_decision.py:
EMA keys ignored, fp16 files, `.ckpt` weights-only).
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from lora_tui.core import model_family, offline
from lora_tui.core.errors import ModelError
from lora_tui.core.model_family import SDXL_BUILTIN_REFUSAL

# Progress bars from loading a 4 MB model are noise in train.log; the trainer prints its own lines.
try:
    from diffusers.utils import logging as _diffusers_logging
    from transformers.utils import logging as _transformers_logging

    _diffusers_logging.disable_progress_bar()
    _transformers_logging.disable_progress_bar()
except ImportError:  # pragma: no cover - older releases without the switch
    pass
from lora_tui.train.model import ldm_convert as lc
from lora_tui.train.model.ldm_convert import PICKLE_REFUSED
from lora_tui.train.model.tokenizer import (  # noqa: F401  (re-exported)
    TOKENIZER_IDS,
    _first_line,
    _hf_cache_dir,
    _hf_cached_tokenizer,
    load_tokenizer,
)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("model_configs")
CONFIGS_METADATA_KEY = "lora_tui.configs"
SINGLE_FILE_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth"}
_COMPONENTS = ("unet", "vae", "text_encoder")


@dataclass
class BaseModel:
    """Everything the trainer needs from a base model, plus where it came from (for run metadata)."""

    tokenizer: Any
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    v2: bool
    v_parameterization: bool
    source: Path
    kind: str  # "diffusers" | "safetensors" | "ckpt"
    notes: list[str] = field(default_factory=list)  # warnings worth a `warn` event in the run

    @property
    def base_model_version(self) -> str:
        """sd-scripts' `ss_base_model_version` value: sd_v1, sd_v2 or sd_v2_v."""
        if not self.v2:
            return "sd_v1"
        return "sd_v2_v" if self.v_parameterization else "sd_v2"


def make_noise_scheduler(v_parameterization: bool) -> DDPMScheduler:
    """The training noise schedule sd-scripts uses for SD1/SD2 (its own constants, not the model's)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, prediction_type="v_prediction" if v_parameterization else "epsilon")


def shipped_configs(v2: bool, v_parameterization: bool = False) -> dict[str, dict[str, Any]]:
    """The real SD1.5 / SD2.1 architecture configs shipped in the package, by component."""
    folder = CONFIG_DIR / ("sd_v2" if v2 else "sd_v1")
    configs = {name: json.loads((folder / f"{name}.json").read_text()) for name in _COMPONENTS}
    if v2 and v_parameterization:  # SD2.x-v: 768px, and SD2.1's upcast attention
        configs["unet"].update(sample_size=96, upcast_attention=True)
        configs["vae"]["sample_size"] = 768
    return configs


def load_base_model(path: str | Path, *, v2: bool = False, v_parameterization: bool = False,
                    tokenizer_path: str | Path | None = None, tokenizer_cache_dir: str | Path | None = None,
                    dtype: torch.dtype = torch.float32) -> BaseModel:
    """Load tokenizer, text encoder, VAE, U-Net and noise scheduler from a local model, offline.

    `path` is a Diffusers folder (model_index.json + unet/ vae/ text_encoder/), a single `.safetensors`
    / `.ckpt` in the original SD layout, or a Hugging Face repo id already in the local cache.

    SD2 detection: sd-scripts needs `--v2` for SD2 files and crashes without it. Here the weights
    decide: OpenCLIP text-encoder keys (or a `gelu` text encoder in a Diffusers folder) mean SD2, and
    `v2=False` (sd-scripts' default, i.e. "not given") is upgraded with a note. An explicit `v2=True`
    on SD1 weights is a contradiction the user should hear about, so it is a ModelError.
    `v_parameterization` is a training choice and is always honoured; a Diffusers scheduler that says
    otherwise only adds a note.
    """
    source = Path(path).expanduser()
    if not source.exists():
        source = _from_hf_cache(str(path)) or source
    if not source.exists():
        raise ModelError("model not found", path=source,
                         hint="give a Diffusers folder or a .safetensors/.ckpt file; models are never downloaded")
    if source.is_dir() and model_family.family_or_none(source) == model_family.SDXL:
        raise ModelError(f"this is an SDXL model: {SDXL_BUILTIN_REFUSAL}", path=source)
    notes: list[str] = []
    tokenizer_args = {"tokenizer_path": tokenizer_path, "tokenizer_cache_dir": tokenizer_cache_dir}
    if source.is_dir():  # the tokenizer is resolved before the weights load: a missing file fails fast
        kind = "diffusers"
        v2 = _diffusers_v2(source, v2, v_parameterization, notes)
        tokenizer = load_tokenizer(source, v2=v2, **tokenizer_args)
        parts = _load_diffusers(source)
    else:
        if source.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"unsupported model file type {source.suffix!r}", path=source,
                             hint="use a .safetensors or .ckpt checkpoint, or a Diffusers folder")
        kind = "safetensors" if source.suffix.lower() == ".safetensors" else "ckpt"
        state, stored = read_checkpoint(source)
        state = lc.normalize_text_encoder_keys(state)
        v2 = _single_file_v2(source, state, v2, notes)
        tokenizer = load_tokenizer(source, v2=v2, **tokenizer_args)
        configs = stored if stored is not None else shipped_configs(v2, v_parameterization)
        parts = {name: _build_from_state(name, configs, state, source, v2) for name in _COMPONENTS}
        del state
    unet, vae, text_encoder = (_own_memory(_cast(parts[name], dtype)) for name in _COMPONENTS)
    vocab = text_encoder.config.vocab_size
    if len(tokenizer) > vocab:
        raise ModelError(f"tokenizer has {len(tokenizer)} tokens but the text encoder only {vocab}", path=source,
                         hint="the tokenizer belongs to another model; pass the matching --tokenizer_path")
    max_len = text_encoder.config.max_position_embeddings
    if not tokenizer.model_max_length or tokenizer.model_max_length > max_len:
        tokenizer.model_max_length = max_len
    for note in notes:
        log.warning("%s: %s", source, note)
    return BaseModel(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, unet=unet,
                     noise_scheduler=make_noise_scheduler(v_parameterization), v2=v2,
                     v_parameterization=v_parameterization, source=source, kind=kind, notes=notes)


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`module.to(dtype)` only when needed (diffusers logs a warning on every `.to`)."""
    if any(p.dtype != dtype for p in module.parameters() if p.is_floating_point()):
        module = module.to(dtype)
    return module


def _own_memory(module: torch.nn.Module) -> torch.nn.Module:
    """Copy tensors that are views into a file buffer (safetensors) into their own aligned memory.

    Unaligned views make CPU kernels take other code paths (slower, and not bit-identical to the
    same weights elsewhere), and keep the whole file buffer alive.
    """
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.data_ptr() % 64 or not tensor.is_contiguous():
                tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return module


def _from_hf_cache(name: str) -> Path | None:
    """A repo id (`owner/name`) already in the local Hugging Face cache, as its snapshot folder.

    Read from the cache's files, never through a download call (see tokenizer._hf_cached_tokenizer);
    fetched only with --allow-download.
    """
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "model_index.json", cache_dir=_hf_cache_dir())
        if isinstance(found, str):
            return Path(found).parent
        if not offline.downloads_allowed():
            return None
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, cache_dir=_hf_cache_dir()))
    except Exception:  # not cached, not a repo id at all, or (allowed) the download failed
        return None


# ---------------------------------------------------------------------------------------------- diffusers
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("file missing from the Diffusers folder", path=path,
                         hint="copy the whole model folder (model_index.json, unet/, vae/, text_encoder/)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read JSON: {_first_line(exc)}", path=path) from None
    if not isinstance(data, dict):
        raise ModelError("expected a JSON object", path=path)
    return data


def _diffusers_v2(root: Path, v2: bool, v_param: bool, notes: list[str]) -> bool:
    """Whether a Diffusers folder is SD2 (its text encoder config says so); notes on flag mismatches."""
    _read_json(root / "model_index.json")
    te_config = _read_json(root / "text_encoder" / "config.json")
    detected_v2 = te_config.get("hidden_act") == "gelu"
    if v2 and not detected_v2:
        raise ModelError("--v2 given but this is an SD1.x model (CLIP ViT-L text encoder)", path=root,
                         hint="drop --v2")
    if detected_v2 and not v2:
        notes.append("SD2 model (OpenCLIP text encoder) loaded as v2 although --v2 was not given")
    scheduler = root / "scheduler" / "scheduler_config.json"
    if scheduler.is_file():
        prediction = _read_json(scheduler).get("prediction_type", "epsilon")
        if (prediction == "v_prediction") != v_param:
            notes.append(f"the model's scheduler says prediction_type={prediction} but --v_parameterization is "
                         f"{'on' if v_param else 'off'}")
    return v2 or detected_v2


def _load_diffusers(root: Path) -> dict[str, torch.nn.Module]:
    loaders = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}
    parts: dict[str, torch.nn.Module] = {}
    for name, cls in loaders.items():
        _read_json(root / name / "config.json")
        try:
            parts[name] = cls.from_pretrained(str(root / name), local_files_only=True)
        except Exception as exc:
            raise ModelError(f"cannot load {name}: {_first_line(exc)}", path=root / name,
                             hint="the folder needs its weights (*.safetensors) next to config.json") from None
    return parts


# -------------------------------------------------------------------------------------------- single file
def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The flat state dict of a single-file checkpoint, and configs lora-tui stored in it (if any).

    `.ckpt`/`.pt` files are unpickled with `weights_only=True`: a file whose pickle would run code is
    refused, never executed.
    """
    stored: str | None = None
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as handle:
                stored = (handle.metadata() or {}).get(CONFIGS_METADATA_KEY)
            state = load_file(str(path))
        except Exception as exc:
            raise ModelError(f"cannot read safetensors file: {_first_line(exc)}", path=path,
                             hint="the file is truncated or not a safetensors checkpoint") from None
    else:
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ModelError(PICKLE_REFUSED, path=path,
                             hint="convert it to .safetensors with a trusted tool, or use a .safetensors "
                                  "download") from None
        except Exception as exc:
            raise ModelError(f"cannot read checkpoint: {_first_line(exc)}", path=path,
                             hint="the file is truncated or not a PyTorch checkpoint") from None
        if not isinstance(loaded, dict):
            raise ModelError("checkpoint is not a dict of weights", path=path)
        value = loaded.get(CONFIGS_METADATA_KEY)
        stored = value if isinstance(value, str) else None
        state = loaded.get("state_dict", loaded)
        if not isinstance(state, dict):
            raise ModelError("checkpoint's state_dict is not a dict of weights", path=path)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    configs = None
    if stored:
        try:
            configs = json.loads(stored)
        except ValueError:
            configs = None
        if not isinstance(configs, dict):
            raise ModelError(f"unreadable {CONFIGS_METADATA_KEY} metadata", path=path)
    return tensors, configs


def _single_file_v2(path: Path, state: dict[str, torch.Tensor], v2: bool, notes: list[str]) -> bool:
    """Whether a checkpoint is SD2, from its text-encoder keys; refuses what is not SD1/SD2."""
    family = lc.detect_family(state)
    if family == "sdxl":
        raise ModelError(f"this is an SDXL checkpoint: {SDXL_BUILTIN_REFUSAL}", path=path)
    if family == "unknown":
        raise ModelError("no Stable Diffusion text encoder in this file (cond_stage_model.*)", path=path,
                         hint="a full SD1.x/SD2.x checkpoint is needed, not a LoRA, VAE or U-Net only file")
    if v2 and family == "sd_v1":
        raise ModelError("--v2 given but this is an SD1.x checkpoint (CLIP ViT-L text encoder)", path=path,
                         hint="drop --v2")
    if family == "sd_v2" and not v2:
        notes.append("SD2 checkpoint (OpenCLIP text encoder) loaded as v2 although --v2 was not given")
    return v2 or family == "sd_v2"


def _build_from_state(name: str, configs: dict[str, Any], state: dict[str, torch.Tensor], path: Path,
                      v2: bool) -> torch.nn.Module:
    """Build one module on the meta device, then assign it the converted checkpoint tensors."""
    config = configs.get(name)
    if not isinstance(config, dict):
        raise ModelError(f"no {name} config for this checkpoint", path=path)
    try:
        with init_empty_weights():
            if name == "unet":
                module = UNet2DConditionModel.from_config(config)
            elif name == "vae":
                module = AutoencoderKL.from_config(config)
            else:
                module = CLIPTextModel(CLIPTextConfig(**config))
    except Exception as exc:
        raise ModelError(f"cannot build the {name} from its config: {_first_line(exc)}", path=path) from None
    expected = module.state_dict()
    try:
        if name == "unet":
            key_map = lc.unet_key_map(config, expected)
        elif name == "vae":
            key_map = lc.vae_key_map(config, expected)
        else:
            key_map = lc.text_encoder_key_map(expected, v2=v2)
    except lc.UnmappedKeyError as exc:
        raise ModelError(f"unsupported {name} layout: {exc.args[0]}", path=path) from None
    converted: dict[str, torch.Tensor] = {}
    for key, source in key_map.items():
        tensor = lc.pull(state, source)
        if tensor is None:
            raise ModelError(f"{name} weight {source.key} missing", path=path,
                             hint="not a complete SD1.x/SD2.x checkpoint")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelError(f"{name} weight {source.key} has shape {tuple(tensor.shape)}, expected "
                             f"{tuple(expected[key].shape)}", path=path,
                             hint="the checkpoint does not match the SD1.x/SD2.x architecture; check --v2")
        dtype = expected[key].dtype if tensor.is_floating_point() else tensor.dtype
        converted[key] = tensor.to(dtype)
    module.load_state_dict(converted, strict=False, assign=True)
    leftover = [n for n, p in module.named_parameters() if p.is_meta]
    if leftover:
        raise ModelError(f"{name} weight for {leftover[0]} missing", path=path)
    return module.eval()

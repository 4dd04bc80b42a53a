"""Load an SDXL base model offline: a Diffusers folder or one `.safetensors` file in the original layout.

Single files load through diffusers' own single-file loader (`from_single_file`) with a local config
folder and `local_files_only=True`, so nothing is fetched: the configs of SDXL 1.0 base ship in
`model_configs/sdxl/` (a Diffusers folder without weights), and files lora-tui wrote itself (tiny test
models) carry their configs in their metadata. diffusers maintains that converter upstream and it
covers SDXL's extra parts (two text encoders, OpenCLIP's fused q/k/v and transposed text projection,
the `label_emb` size embedding); a tiny model written in the original layout loads through it
bit-identical to the same model saved as a Diffusers folder (tests/test_sdxl_models.py). SD1/SD2 keep
our own converter (`ldm_convert`), which is tested exhaustively and loads pickles weights-only.

The two tokenizers are looked up in this order: the Diffusers folder's `tokenizer/` and
`tokenizer_2/`; `tokenizer/` + `tokenizer_2/` or `<stem>.tokenizer/` + `<stem>.tokenizer_2/` next to a
single file; sd-scripts' `tokenizer_cache_dir` layout (`openai_clip-vit-large-patch14`,
`laion_CLIP-ViT-bigG-14-laion2B-39B-b160k`); the local Hugging Face cache. A missing one is a
one-line ModelError naming where it was looked for.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lora_tui.core.errors import ModelError
from lora_tui.train.model.tokenizer import _first_line, _has_tokenizer_files, _hf_cached_tokenizer, _tokenizer_from

SDXL_CONFIG_DIR = Path(__file__).with_name("model_configs") / "sdxl"
CONFIGS_METADATA_KEY = "lora_tui.configs"
# (subfolder in a Diffusers folder, sd-scripts' hub id) for each of SDXL's two tokenizers
SDXL_TOKENIZERS = (("tokenizer", "openai/clip-vit-large-patch14"),
                   ("tokenizer_2", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"))
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@dataclass
class SdxlBaseModel:
    """SDXL's parts as loaded, plus where they came from."""

    tokenizers: tuple[Any, Any]
    text_encoders: tuple[torch.nn.Module, torch.nn.Module]
    vae: torch.nn.Module
    unet: torch.nn.Module
    source: Path
    kind: str  # "diffusers" | "safetensors"
    notes: list[str] = field(default_factory=list)
    base_model_version: str = "sdxl_base_v1-0"  # sd-scripts' ss_base_model_version for SDXL
    v_parameterization: bool = False  # SDXL base predicts noise; a v-prediction fine-tune sets it
    noise_scheduler: Any = None  # the training schedule (sd-scripts' constants, as for SD1/SD2)

    # The trainer reads SD1/SD2's BaseModel attribute names; SDXL answers them with its first encoder
    # and adds the second, so one loop serves both families.
    is_sdxl = True
    v2 = False

    @property
    def tokenizer(self) -> Any:
        return self.tokenizers[0]

    @property
    def text_encoder(self) -> torch.nn.Module:
        return self.text_encoders[0]

    @property
    def text_encoder_2(self) -> torch.nn.Module:
        return self.text_encoders[1]


def find_sdxl_tokenizer(model: Path, index: int, tokenizer_cache_dir: str | Path | None = None) -> Path:
    """The folder holding SDXL tokenizer `index` (0 = CLIP-L, 1 = OpenCLIP bigG) for `model`, offline."""
    sub, model_id = SDXL_TOKENIZERS[index]
    if model.is_dir():
        candidates = [model / sub]
    else:
        candidates = [model.parent / sub, model.parent / f"{model.stem}.{sub}"]
    if tokenizer_cache_dir is not None:
        candidates.append(Path(tokenizer_cache_dir).expanduser() / model_id.replace("/", "_"))
    for folder in candidates:
        if _has_tokenizer_files(folder):
            return folder
    cached = _hf_cached_tokenizer(model_id, None)
    if cached is not None:
        return cached
    raise ModelError(f"no {sub} (SDXL's {'second' if index else 'first'} tokenizer) found for {model.name}",
                     path=model, hint=f"put vocab.json + merges.txt in {candidates[0]}/, in "
                     f"tokenizer_cache_dir/{model_id.replace('/', '_')}/, or cache {model_id} locally")


def load_sdxl_tokenizers(model: Path, tokenizer_cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    """Both SDXL tokenizers; the second pads with token 0 as OpenCLIP (and sd-scripts) do."""
    first = _tokenizer_from(find_sdxl_tokenizer(model, 0, tokenizer_cache_dir))
    second = _tokenizer_from(find_sdxl_tokenizer(model, 1, tokenizer_cache_dir))
    second.pad_token_id = 0
    return first, second


def _stored_configs(path: Path) -> dict[str, Any] | None:
    """Configs lora-tui stored in a file's metadata (tiny models), read from the header only."""
    from lora_tui.core.model_family import read_safetensors_header

    meta = read_safetensors_header(path).get("__metadata__") or {}
    raw = meta.get(CONFIGS_METADATA_KEY) if isinstance(meta, dict) else None
    if not raw:
        return None
    try:
        configs = json.loads(raw)
    except ValueError:
        raise ModelError(f"unreadable {CONFIGS_METADATA_KEY} metadata", path=path) from None
    if not isinstance(configs, dict) or not all(isinstance(configs.get(c), dict) for c in COMPONENTS):
        raise ModelError(f"{CONFIGS_METADATA_KEY} metadata lacks a config for one of {', '.join(COMPONENTS)}",
                         path=path)
    return configs


def _config_folder(configs: dict[str, Any], into: Path) -> Path:
    """A weightless Diffusers folder: the shipped SDXL folder with `configs` replacing its components'."""
    for item in SDXL_CONFIG_DIR.rglob("*.json"):
        target = into / item.relative_to(SDXL_CONFIG_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
    for name in COMPONENTS:
        config = dict(configs[name])
        if name.startswith("text_encoder"):
            config.setdefault("architectures", ["CLIPTextModelWithProjection" if name.endswith("_2")
                                                else "CLIPTextModel"])
            config.setdefault("model_type", "clip_text_model")
        (into / name / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return into


def load_sdxl_model(path: str | Path, *, tokenizer_cache_dir: str | Path | None = None,
                    dtype: torch.dtype = torch.float32, v_parameterization: bool = False) -> SdxlBaseModel:
    """Tokenizers, both text encoders, VAE and U-Net of a local SDXL model, offline.

    Tokenizers are resolved first, so a missing one fails before seconds of weight loading.
    The noise schedule is sd-scripts' for every family (sdxl_train_network.py uses train_network.py's).
    """
    from diffusers import StableDiffusionXLPipeline

    from lora_tui.train.model import load as _models  # noqa: F401  (quiets the libraries' progress bars)
    from lora_tui.train.model.load import make_noise_scheduler

    source = Path(path).expanduser()
    if not source.exists():
        raise ModelError("model not found", path=source, hint="give a Diffusers folder or a .safetensors file")
    tokenizers = load_sdxl_tokenizers(source, tokenizer_cache_dir)
    extra = {"tokenizer": tokenizers[0], "tokenizer_2": tokenizers[1], "dtype": dtype}
    try:
        if source.is_dir():
            kind = "diffusers"
            pipe = StableDiffusionXLPipeline.from_pretrained(str(source), local_files_only=True, **extra)
        elif source.suffix.lower() != ".safetensors":
            raise ModelError("SDXL single files are read as .safetensors only", path=source,
                             hint="convert the checkpoint to .safetensors, or use a Diffusers folder")
        else:
            kind = "safetensors"
            stored = _stored_configs(source)
            with tempfile.TemporaryDirectory(prefix="lora-tui-sdxl-") as tmp:
                folder = _config_folder(stored, Path(tmp)) if stored else SDXL_CONFIG_DIR
                pipe = StableDiffusionXLPipeline.from_single_file(str(source), config=str(folder),
                                                                  local_files_only=True, **extra)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot load the SDXL model: {_first_line(exc)}", path=source,
                         hint="a complete SDXL base checkpoint (U-Net, VAE, both text encoders) is needed") from None
    return SdxlBaseModel(tokenizers=tokenizers, text_encoders=(pipe.text_encoder.eval(), pipe.text_encoder_2.eval()),
                         vae=pipe.vae.eval(), unet=pipe.unet.eval(), source=source, kind=kind,
                         v_parameterization=v_parameterization,
                         noise_scheduler=make_noise_scheduler(v_parameterization))

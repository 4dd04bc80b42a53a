"""A random full-size SDXL 1.0 base model as one original-layout .safetensors, for benches (issue 13).

    .venv/bin/python bench/make_random_sdxl.py OUT.safetensors --tokenizer-cache DIR [--from-cache SD15_CACHE]

The shapes are SDXL 1.0 base's (the configs shipped in `lora_tui/train/model/model_configs/sdxl`:
2.57 G U-Net, 123 M CLIP-L, 695 M OpenCLIP bigG, 84 M VAE parameters), written in fp16 (~7 GB) so
that a 24 GB machine can hold a trainer's fp32 copy next to it. The modules are built on the meta
device and filled tensor by tensor in fp16 (Gaussian weights scaled by 1/sqrt(fan-in), so the
activations of 70 stacked blocks neither vanish nor overflow; norm scales 1, biases 0), then written
by a streaming writer: the peak is one copy of the model, not the two `safetensors.save_file` makes.
Step time does not depend on the values as long as they stay finite and normal (no denormals).

`--tokenizer-cache DIR` also lays out sd-scripts' `tokenizer_cache_dir` for SDXL: the CLIP-L tokenizer
copied from `--from-cache` (a folder holding `openai_clip-vit-large-patch14/`), and the same files as
`laion_CLIP-ViT-bigG-14-laion2B-39B-b160k/` (bigG's real tokenizer is the same CLIP BPE with another
pad token; for timing, a tokenizer with the same vocabulary serves).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "lora_tui" / "train" / "model" / "model_configs" / "sdxl"
DTYPES = {torch.float16: "F16", torch.float32: "F32"}


def _config(name: str) -> dict:
    cfg = json.loads((CONFIGS / name / "config.json").read_text("utf-8"))
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype")}


def build_meta() -> dict[str, torch.nn.Module]:
    """SDXL 1.0 base's four modules on the meta device (no memory, no init time)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        return {"unet": UNet2DConditionModel(**_config("unet")), "vae": AutoencoderKL(**_config("vae")),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**_config("text_encoder"))),
                "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**_config("text_encoder_2")))}


def fill(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Materialise `module` in fp16 on the CPU with well-scaled random values."""
    module.to(torch.float16).to_empty(device="cpu")
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("position_ids"):
                tensor.copy_(torch.arange(tensor.shape[-1]).expand_as(tensor))
            elif tensor.ndim >= 2:
                fan_in = math.prod(tensor.shape[1:])
                std = 0.02 if "embedding" in name else 1 / math.sqrt(fan_in)
                tensor.normal_(0.0, std, generator=generator)
            elif name.endswith("weight") or name.endswith("logit_scale"):
                tensor.fill_(1.0)  # norm scales
            else:
                tensor.zero_()  # biases


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """The safetensors format (8-byte header length, JSON header, raw little-endian data), streamed."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[key] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for tensor in tensors.values():
            fh.write(tensor.contiguous().view(torch.uint8).numpy().data)
    os.replace(tmp, path)


def tokenizer_cache(dest: Path, source: Path) -> None:
    """sd-scripts' tokenizer_cache_dir layout for SDXL's two tokenizers (see the module docstring)."""
    clip_l = source / "openai_clip-vit-large-patch14"
    for name in ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"):
        shutil.copytree(clip_l, dest / name, dirs_exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    from lora_tui.train.model.tiny_sdxl import sdxl_ldm_state_dict

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer-cache", type=Path, help="write sd-scripts' SDXL tokenizer_cache_dir here")
    parser.add_argument("--from-cache", type=Path, default=Path("/work/sdscripts-models/tokenizer-cache"))
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if opts.tokenizer_cache:
        tokenizer_cache(opts.tokenizer_cache, opts.from_cache)
    generator = torch.Generator().manual_seed(opts.seed)
    modules = build_meta()
    for module in modules.values():
        fill(module, generator)
    tensors = sdxl_ldm_state_dict(modules)
    del modules
    count = sum(t.numel() for t in tensors.values())
    write_safetensors(opts.out, tensors, {"format": "pt", "modelspec.architecture": "stable-diffusion-xl-v1-base"})
    print(f"{opts.out}: {len(tensors)} tensors, {count / 1e9:.3f} G parameters, fp16")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

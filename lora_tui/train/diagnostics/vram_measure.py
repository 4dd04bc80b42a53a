"""Measure what `core.vram` estimates: parameter counts and training memory, on the meta device.

`core.vram` must stay torch-free (doctor, lint and the TUI read it), so its numbers are data. They
come from here, and tests/train/test_vram_measure.py re-measures them so the table cannot drift from
the shipped configs. Nothing here allocates real memory: every model is built on the meta device.

How training memory is measured (`training_peak`): a `TorchDispatchMode` sees every tensor each
aten op returns; it adds the bytes of each new storage to a running total and subtracts them when
the storage is freed (a `weakref.finalize` on the storage), so the maximum of the running total is
the peak of what the step keeps alive: saved activations, the backward's transients and gradients,
exactly as a caching allocator would be asked for them (minus its rounding and fragmentation).
Weights are built before the mode starts, so they are not in the figure (`core.vram` counts them).

Attention is measured as a GPU runs it: on the meta device `scaled_dot_product_attention` falls back
to the math path, which keeps the full (tokens × tokens) score matrix, something no GPU step keeps
with flash / memory-efficient SDPA (xformers, `sdpa`, torch's default on CUDA). So, while measuring,
`F.scaled_dot_product_attention` without a mask is routed to aten's flash-attention op, whose
meta kernel returns what the CUDA kernel saves (the output and the log-sum-exp per row).

Precision: autocast does not apply on the meta device, so a mixed-precision step is measured with
bf16 weights, the fp32 LoRA sd-scripts and the built-in trainer keep, and CUDA autocast's casts
applied at the functional level (`autocast_like`: GroupNorm/LayerNorm in fp32, Linear/Conv2d in
bf16). That is a model of autocast, not autocast itself: one reason the estimate is unverified.
fp32 runs are measured in fp32.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model" / "model_configs"
FAMILIES = ("sd_v1", "sd_v2", "sdxl")


class LiveBytes(TorchDispatchMode):
    """Running and peak bytes of the storages created by aten ops while the mode is active."""

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        """`existing`: tensors made before the step (weights, inputs); views of them cost nothing."""
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()
        self._existing = [t.untyped_storage() for t in existing]  # held, so their ids stay theirs
        self._skip = {id(s) for s in self._existing}

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live or key in self._skip:  # a view of a storage already counted, or a weight
            return
        size = storage.nbytes()
        self._live.add(key)
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self._track, out)
        return out


@contextlib.contextmanager
def flash_sdpa() -> Iterator[None]:
    """Route unmasked SDPA to aten's flash-attention op (what a GPU keeps; see the module docstring)."""
    original = F.scaled_dot_product_attention

    def flash(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, **kw: Any) -> Any:
        if attn_mask is not None or kw:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, **kw)
        return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal,
                                                                    scale=scale)[0]

    F.scaled_dot_product_attention = flash
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@contextlib.contextmanager
def autocast_like(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """CUDA autocast's casts, at the functional level, for the meta device (where autocast does nothing).

    CUDA autocast runs `group_norm`/`layer_norm` in fp32 (fp32 outputs, which the next SiLU or
    attention input keeps) and `linear`/`conv2d` in `dtype` (an fp32 input, such as the fp32 LoRA's
    an fp32 norm output, is cast: that cast is a new tensor the layer saves) and the LoRA's fused
    `addmm` in `dtype`. The four functions the SD U-Nets and CLIP use are wrapped (diffusers and
    torch.nn call them through `F`), plus `torch.addmm`; the adapter is told autocast is on, so it
    leaves its input to autocast as it does on CUDA."""
    names = ("group_norm", "layer_norm", "linear", "conv2d")
    original = {name: getattr(F, name) for name in names}

    def low(x: Any) -> Any:
        return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype else x

    def high(x: Any) -> Any:
        return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    def group_norm(x: torch.Tensor, groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Any:
        return original["group_norm"](high(x), groups, high(weight), high(bias), eps)

    def layer_norm(x: torch.Tensor, shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Any:
        return original["layer_norm"](high(x), shape, high(weight), high(bias), eps)

    def linear(x: torch.Tensor, weight: torch.Tensor, bias: Any = None) -> Any:
        return original["linear"](low(x), low(weight), low(bias))

    def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original["conv2d"](low(x), low(weight), low(bias), *args, **kwargs)

    def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> Any:
        return original_addmm(low(bias), low(a), low(b), **kwargs)  # the LoRA's fused up-projection

    from lora_tui.train.network import lora

    original_addmm, original_autocasting = torch.addmm, lora._autocasting
    replacements = {"group_norm": group_norm, "layer_norm": layer_norm, "linear": linear, "conv2d": conv2d}
    for name in names:
        setattr(F, name, replacements[name])
    torch.addmm = addmm  # type: ignore[assignment]
    lora._autocasting = lambda x: True  # the adapter leaves its input's cast to autocast, as under CUDA autocast
    try:
        yield
    finally:
        for name in names:
            setattr(F, name, original[name])
        torch.addmm = original_addmm  # type: ignore[assignment]
        lora._autocasting = original_autocasting


# ------------------------------------------------------------------------------------------- configs
def _clean(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}


def configs(family: str) -> dict[str, dict[str, Any]]:
    """The shipped configs of a family by part: unet, vae, text_encoder (and text_encoder_2 for SDXL)."""
    folder = CONFIG_DIR / family
    if family == "sdxl":
        parts = ("unet", "vae", "text_encoder", "text_encoder_2")
        return {p: _clean(json.loads((folder / p / "config.json").read_text("utf-8"))) for p in parts}
    return {p: _clean(json.loads((folder / f"{p}.json").read_text("utf-8"))) for p in ("unet", "vae", "text_encoder")}


def _text_encoder(config: dict[str, Any], projection: bool) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(**config))


def build(family: str, part: str) -> torch.nn.Module:
    """One part of a family's model on the meta device, frozen."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    config = configs(family)[part]
    with torch.device("meta"):
        if part == "unet":
            module = UNet2DConditionModel(**config)
        elif part == "vae":
            module = AutoencoderKL(**config)
        else:
            module = _text_encoder(config, projection=part == "text_encoder_2")
    return module.requires_grad_(False)


def param_counts(family: str) -> dict[str, int]:
    """Parameters of the U-Net, the VAE and the text encoder(s) (summed) from the shipped configs."""
    counts = {"unet": 0, "vae": 0, "text_encoders": 0}
    for part in configs(family):
        n = sum(p.numel() for p in build(family, part).parameters())
        counts["text_encoders" if part.startswith("text_encoder") else part] += n
    return counts


# ------------------------------------------------------------------------------------------- memory
def _existing(*items: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for item in items:
        if isinstance(item, torch.nn.Module):
            out += [*item.parameters(), *item.buffers()]
        elif isinstance(item, torch.Tensor):
            out.append(item)
        elif isinstance(item, dict):
            out += _existing(*item.values())
        elif isinstance(item, list | tuple):
            out += _existing(*item)
    return out


def _peak(step: Callable[[], Any], *existing: Any, mixed: bool = False) -> int:
    mode = LiveBytes(_existing(*existing))
    with flash_sdpa(), autocast_like() if mixed else contextlib.nullcontext(), mode:
        step()
    return mode.peak


def unet_training_peak(family: str, latent: tuple[int, int], batch: int = 1, *, gradient_checkpointing: bool = False,
                       conv_dim: int | None = None, dim: int = 16, precision: str = "mixed") -> int:
    """Peak bytes of one U-Net LoRA training step (forward, MSE loss, backward), weights excluded.

    The LoRA is the built-in trainer's `LoRANetwork` (sd-scripts' targets), UNet-only, base frozen;
    its weights and gradients are a few MB and are counted by `core.vram` separately (they are in
    this figure too, as the backward creates the gradients). `precision`: "mixed" is bf16 weights,
    an fp32 LoRA and `autocast_like` (a mixed-precision run); "bf16" everything in bf16 without
    autocast; "fp32" everything in fp32."""
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    lora_dtype = torch.float32 if precision in ("mixed", "fp32") else torch.bfloat16
    from lora_tui.train.network.lora import LoRANetwork

    unet = build(family, "unet").to(dtype)
    with torch.device("meta"):
        network = LoRANetwork(None, unet, dim=dim, alpha=float(dim), conv_dim=conv_dim, train_text_encoder=False)
    network.apply_to()
    network.to(lora_dtype)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    config = configs(family)["unet"]
    h, w = latent
    with torch.device("meta"):
        noisy = torch.randn(batch, config["in_channels"], h, w, dtype=dtype)
        noise = torch.randn_like(noisy)
        timesteps = torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, 77, config["cross_attention_dim"], dtype=dtype)
        extra: dict[str, Any] = {}
        if config.get("addition_embed_type") == "text_time":
            extra["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, 1280, dtype=dtype),
                                          "time_ids": torch.randn(batch, 6, dtype=dtype)}

    def step() -> None:
        pred = unet(noisy, timesteps, states, **extra).sample
        F.mse_loss(pred.float(), noise.float()).backward()

    return _peak(step, unet, network, noisy, noise, timesteps, states, extra, mixed=precision == "mixed")


def vae_encode_peak(family: str, pixels: tuple[int, int], batch: int = 1, dtype: torch.dtype = torch.bfloat16) -> int:
    """Peak bytes of encoding one batch of images to latents without gradients (uncached latents)."""
    vae = build(family, "vae").to(dtype)
    with torch.device("meta"):
        images = torch.randn(batch, 3, *pixels, dtype=dtype)

    def step() -> None:
        with torch.no_grad():
            vae.encode(images).latent_dist.sample()

    return _peak(step, vae, images)


def text_encoder_training_peak(family: str, batch: int = 1, dim: int = 16, dtype: torch.dtype = torch.bfloat16) -> int:
    """Peak bytes of a trained text encoder's forward + backward (LoRA on it), 77 tokens; SDXL: both."""
    from lora_tui.train.network.lora import LoRANetwork

    parts = [p for p in configs(family) if p.startswith("text_encoder")]
    encoders = [build(family, p).to(dtype) for p in parts]
    networks = []
    for te in encoders:
        with torch.device("meta"):
            networks.append(LoRANetwork(te, None, dim=dim, alpha=float(dim)))
        networks[-1].apply_to()
        networks[-1].to(dtype)
    with torch.device("meta"):
        ids = torch.zeros(batch, 77, dtype=torch.long)

    def step() -> None:
        outs = [te(ids, output_hidden_states=True).hidden_states[-2] for te in encoders]
        sum(o.float().square().mean() for o in outs).backward()

    return _peak(step, encoders, networks, ids)

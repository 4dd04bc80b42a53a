"""The LoRA network the built-in trainer trains, in kohya-ss/sd-scripts' `networks.lora` layout.

The file it saves is the product users take to webui, ComfyUI and diffusers, so everything that
reaches the file follows sd-scripts exactly (reference §5): the targets (Linear/Conv2d inside
`Transformer2DModel`; with `conv_dim` also inside `ResnetBlock2D`/`Downsample2D`/`Upsample2D`;
Linear inside the CLIP attention and MLP blocks), the names (`lora_unet_`/`lora_te_` + the module
path with "." → "_"), the tensors (`lora_down.weight`, `lora_up.weight`, `alpha` = the real alpha)
and the maths (scale = alpha / rank, alpha None or 0 → rank). Which layers are targets and what
their adapters are named is :mod:`lora_tui.train.network.lora_targets`; this module holds the adapter
and the network built from those targets.

SDXL (sd-scripts' `sdxl_train_network.py` file): pass both text encoders as a pair,
`LoRANetwork((clip_l, clip_bigg), unet, …)` — their adapters are named `lora_te1_…` and `lora_te2_…` —
and the diffusers SDXL U-Net (told by its `text_time` added embedding), whose adapters are named in
the original SGM layout (`lora_unet_input_blocks_4_1_…`, see `sdxl_names`). Everything else (apply_to,
save_weights, load_weights, from_weights, prepare_optimizer_params) is the same as for SD1.x/2.x.

The base model is never copied: each adapted layer keeps its weights and gets its `forward`
replaced by the LoRA module's (`apply_to`), which `remove` undoes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lora_tui.core.errors import TrainError
from lora_tui.train.network.lora_targets import (
    TE_PREFIX,
    UNET_CONV_TARGETS,
    UNET_PREFIX,
    UNET_TARGETS,
    find_targets,
    is_te_target,
    te_path_prefix,
)
from lora_tui.train.network.sdxl_names import TE_PREFIXES_SDXL, family_words, is_sdxl_unet, lora_family
from lora_tui.train.network.weights_style import read_kohya_weights


def _autocasting(x: torch.Tensor) -> bool:
    """Autocast casts a product's input itself; casting it first to the LoRA's dtype made a second copy of
    every adapted input that the backward kept (~0.8 GiB per 1024 px SDXL sample). Meta has no autocast."""
    return x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)


class LoRAModule(nn.Module):
    """One low-rank adapter beside one Linear or Conv2d of the base model.

    The original module is held in a list so it is not a submodule: the network's state dict
    must hold only the three sd-scripts tensors per adapter, never base weights.
    """

    def __init__(self, lora_name: str, org_module: nn.Module, dim: int, alpha: float | None,
                 multiplier: float = 1.0, dropout: float | None = None) -> None:
        super().__init__()
        self.lora_name = lora_name
        self.lora_dim = int(dim)
        if isinstance(org_module, nn.Conv2d):
            self.lora_down: nn.Module = nn.Conv2d(org_module.in_channels, self.lora_dim, org_module.kernel_size,
                                                  org_module.stride, org_module.padding, bias=False)
            self.lora_up: nn.Module = nn.Conv2d(self.lora_dim, org_module.out_channels, (1, 1), (1, 1), bias=False)
        elif isinstance(org_module, nn.Linear):
            self.lora_down = nn.Linear(org_module.in_features, self.lora_dim, bias=False)
            self.lora_up = nn.Linear(self.lora_dim, org_module.out_features, bias=False)
        else:
            raise TypeError(f"{lora_name}: LoRA wraps Linear or Conv2d, not {type(org_module).__name__}")
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        real_alpha = float(self.lora_dim) if alpha is None or float(alpha) == 0 else float(alpha)
        self.register_buffer("alpha", torch.tensor(real_alpha))
        self.scale = real_alpha / self.lora_dim
        self.multiplier = multiplier
        self.dropout = dropout
        self._org: list[nn.Module] = [org_module]
        self._org_forward: Callable[..., torch.Tensor] | None = None
        self._saved_instance_forward: Any = None

    @property
    def org_module(self) -> nn.Module:
        """The wrapped base-model layer."""
        return self._org[0]

    @property
    def is_conv(self) -> bool:
        return isinstance(self.lora_down, nn.Conv2d)

    def apply_to(self) -> None:
        """Route the base layer's forward through this adapter (idempotent)."""
        if self._org_forward is not None:
            return
        org = self.org_module
        self._saved_instance_forward = org.__dict__.get("forward")
        self._org_forward = org.forward
        org.forward = self.forward

    def remove(self) -> None:
        """Give the base layer its own forward back (idempotent)."""
        if self._org_forward is None:
            return
        org = self.org_module
        if self._saved_instance_forward is not None:
            org.forward = self._saved_instance_forward
        else:
            org.__dict__.pop("forward", None)
        self._org_forward = None
        self._saved_instance_forward = None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """y = org(x) + multiplier · scale · up(down(x)), with neuron dropout on down(x) in training."""
        if self._org_forward is None:
            raise RuntimeError(f"{self.lora_name}: call apply_to() before running the model")
        out = self._org_forward(x, *args, **kwargs)
        lx = self.lora_down(x if _autocasting(x) else x.to(self.lora_down.weight.dtype))
        if self.dropout and self.training:
            lx = F.dropout(lx, p=self.dropout)
        factor = self.multiplier * self.scale
        if lx.dtype == out.dtype and not self.is_conv and out.is_contiguous():
            # out + factor·(lx @ upᵀ) in one addmm: the scale and the sum ride on the product instead of
            # two more passes over the (tokens × features) output, forward and backward (float rounding only)
            up = self.lora_up.weight
            return torch.addmm(out.view(-1, up.shape[0]), lx.reshape(-1, up.shape[1]), up.t(),
                               alpha=factor).view(out.shape)
        lx = self.lora_up(lx)
        return out + (lx * factor).to(out.dtype)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """up @ down · scale (without multiplier), shaped like the base weight, in float32."""
        down = self.lora_down.weight.float()
        up = self.lora_up.weight.float()
        if not self.is_conv:
            delta = up @ down
        elif down.shape[2:] == (1, 1):
            delta = (up.flatten(1) @ down.flatten(1)).unsqueeze(-1).unsqueeze(-1)
        else:  # 3×3: compose the 1×1 up conv over the k×k down conv
            delta = F.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
        return delta * self.scale

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # A loaded file brings its own alpha; the scale must follow it, or the next save would
        # write an alpha that does not describe the weights.
        super()._load_from_state_dict(*args, **kwargs)
        if self.alpha.device.type != "meta":
            self.scale = float(self.alpha) / self.lora_dim


@dataclass
class WeightsInfo:
    """What `load_weights` found in a file: for the log line and for resuming."""

    path: Path | None
    loaded_keys: int
    missing_keys: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


class LoRANetwork(nn.Module):
    """All adapters for one SD1.x/2.x or SDXL model; `state_dict()` is exactly sd-scripts' file layout."""

    def __init__(self, text_encoder: nn.Module | Sequence[nn.Module] | None, unet: nn.Module | None, *, dim: int = 4,
                 alpha: float | None = 1.0, conv_dim: int | None = None, conv_alpha: float | None = None,
                 train_unet: bool = True, train_text_encoder: bool = True, dropout: float | None = None,
                 multiplier: float = 1.0, modules_dim: Mapping[str, int] | None = None,
                 modules_alpha: Mapping[str, float] | None = None) -> None:
        """Build (but do not apply) the adapters.

        `conv_alpha` defaults to 1.0 when `conv_dim` is set, like sd-scripts' network_args.
        `modules_dim`/`modules_alpha` (per lora_name, from a file) replace dim/alpha and limit the
        adapters to those names: that is `from_weights`, i.e. `--dim_from_weights`.
        `text_encoder` is one CLIP model (SD1/SD2: `lora_te_…`) or SDXL's pair (`lora_te1_…`, `lora_te2_…`).
        """
        super().__init__()
        self.multiplier = multiplier
        if conv_dim is not None and conv_alpha is None:
            conv_alpha = 1.0

        def make(root: nn.Module, prefix: str, match: Callable[[str], bool], path_prefix: str = "",
                 sgm: bool = False) -> list[LoRAModule]:
            loras = []
            for lora_name, layer in find_targets(root, prefix, match, path_prefix, sgm):
                small = isinstance(layer, nn.Linear) or tuple(layer.kernel_size) == (1, 1)
                if modules_dim is not None:
                    if lora_name not in modules_dim:
                        continue
                    mdim, malpha = modules_dim[lora_name], (modules_alpha or {}).get(lora_name)
                elif small:
                    mdim, malpha = dim, alpha
                elif conv_dim:
                    mdim, malpha = conv_dim, conv_alpha
                else:
                    continue
                if not mdim:
                    continue
                loras.append(LoRAModule(lora_name, layer, mdim, malpha, multiplier, dropout))
            return loras

        from_file = modules_dim is not None
        encoders = [] if text_encoder is None else (
            [text_encoder] if isinstance(text_encoder, nn.Module) else list(text_encoder))
        if len(encoders) > 2:
            raise ValueError(f"LoRANetwork takes one text encoder or SDXL's two, not {len(encoders)}")
        prefixes = TE_PREFIXES_SDXL if len(encoders) == 2 else (TE_PREFIX,)
        self.is_sdxl = len(encoders) == 2 or is_sdxl_unet(unet)
        self.text_encoder_loras: list[LoRAModule] = []
        self.unet_loras: list[LoRAModule] = []
        self.te_counts: list[int] = []
        for encoder, prefix in zip(encoders, prefixes):
            loras = make(encoder, prefix, is_te_target, te_path_prefix(encoder)) \
                if train_text_encoder or from_file else []
            self.te_counts.append(len(loras))
            self.text_encoder_loras += loras
        if unet is not None and (train_unet or from_file):
            # one walk over both target lists, so adapters come in module order like sd-scripts'
            classes = UNET_TARGETS + (UNET_CONV_TARGETS if from_file or conv_dim else ())
            self.unet_loras = make(unet, UNET_PREFIX, lambda c: c in classes, sgm=is_sdxl_unet(unet))
        for lora in self.loras:
            self.add_module(lora.lora_name, lora)

    @property
    def loras(self) -> list[LoRAModule]:
        """Every adapter, text encoder first (sd-scripts' order)."""
        return self.text_encoder_loras + self.unet_loras

    @property
    def counts(self) -> dict[str, int]:
        """Adapter counts, the figures sd-scripts logs (SD1.5: text_encoder 72, unet 192).

        With SDXL's two encoders also per encoder (SDXL 1.0: text_encoder_1 72 + text_encoder_2 192).
        """
        counts = {"text_encoder": len(self.text_encoder_loras), "unet": len(self.unet_loras)}
        if len(self.te_counts) == 2:
            counts["text_encoder_1"], counts["text_encoder_2"] = self.te_counts
        return counts

    @property
    def is_applied(self) -> bool:
        return any(lora._org_forward is not None for lora in self.loras)

    def apply_to(self) -> None:
        """Patch every wrapped layer's forward so the base models run with the adapters."""
        for lora in self.loras:
            lora.apply_to()

    def remove(self) -> None:
        """Restore the original forwards; the base models behave as if never touched."""
        for lora in self.loras:
            lora.remove()

    def set_multiplier(self, multiplier: float) -> None:
        """Change the strength of every adapter (1.0 trains; samples may use others)."""
        self.multiplier = multiplier
        for lora in self.loras:
            lora.multiplier = multiplier

    def text_encoder_params(self) -> list[nn.Parameter]:
        return [p for lora in self.text_encoder_loras for p in lora.parameters()]

    def unet_params(self) -> list[nn.Parameter]:
        return [p for lora in self.unet_loras for p in lora.parameters()]

    def prepare_optimizer_params(self, text_encoder_lr: float | Sequence[float] | None, unet_lr: float | None,
                                 default_lr: float | None) -> list[dict[str, Any]]:
        """Optimizer param groups named "textencoder" and "unet", as sd-scripts builds them.

        `text_encoder_lr` may be a list (SDXL's `text_encoder_lr = [te1, te2]`): for networks.lora
        sd-scripts' train_network.py takes its first value for both encoders (only its FLUX/SD3-style
        networks have per-encoder rates), and an empty list means unset; so does this.

        A part's lr falls back to `default_lr`; a group whose lr ends up None or 0 is left out
        (sd-scripts: "NO LR skipping!") and its parameters stop requiring grad. The group's
        `name` is what the trainer logs the lr under (`lr/textencoder`, `lr/unet`).
        """
        if text_encoder_lr is not None and not isinstance(text_encoder_lr, (int, float)):
            text_encoder_lr = next(iter(text_encoder_lr), None)
        groups: list[dict[str, Any]] = []
        for name, params, lr in (("textencoder", self.text_encoder_params(), text_encoder_lr),
                                 ("unet", self.unet_params(), unet_lr)):
            if not params:
                continue
            lr = default_lr if lr is None else lr
            for p in params:
                p.requires_grad_(bool(lr))
            if lr:
                groups.append({"params": params, "lr": lr, "name": name})
        return groups

    @torch.no_grad()
    def merge_into_base(self) -> None:
        """Add multiplier · scale · up@down into each base weight and unpatch the forwards.

        Afterwards the base models alone compute what base + network computed; the network is
        spent (merging it again would add the delta twice).
        """
        self.remove()
        for lora in self.loras:
            weight = lora.org_module.weight
            delta = lora.delta_weight().to(weight.device) * lora.multiplier
            weight.add_(delta.to(weight.dtype))

    def save_weights(self, path: str | Path, metadata: Mapping[str, str] | None = None, *,
                     dtype: torch.dtype | None = None) -> dict[str, str]:
        """Write the adapters as an sd-scripts LoRA file; returns the metadata actually written."""
        from lora_tui.train.network.file import save_lora

        return save_lora(path, self.state_dict(), dict(metadata or {}), dtype=dtype)

    def load_weights(self, source: str | Path | Mapping[str, torch.Tensor]) -> WeightsInfo:
        """Continue from a LoRA file (`--network_weights`): every key must fit this network.

        Unlike sd-scripts (strict=False, silently ignoring what does not fit), a key that names no
        adapter or has another shape is a one-line TrainError: training on after a half-loaded
        file wastes hours. Adapters absent from the file keep their fresh init (reported).
        """
        state_dict, metadata, path = read_kohya_weights(source, sdxl=self.is_sdxl)
        return self._load_checked(state_dict, metadata, path)

    def _load_checked(self, state_dict: Mapping[str, torch.Tensor], metadata: dict[str, str],
                      path: Path | None) -> WeightsInfo:
        own = self.state_dict()
        unknown = [k for k in state_dict if k not in own]
        family = lora_family(state_dict, metadata)
        if (unknown or not own) and family is not None and (family == "sdxl") != self.is_sdxl:
            model = "SDXL" if self.is_sdxl else "SD1.x/SD2.x"
            raise TrainError(f"this LoRA was trained for {family_words(family, metadata)}, the base model is {model}",
                             path=path, hint=f"give network_weights a LoRA trained on an {model} model")
        if unknown:
            raise TrainError(
                f"{len(unknown)} tensor(s) in the LoRA file match no adapter of this network, first {unknown[0]!r}",
                path=path, hint="was it trained for another base model (SDXL? SD2?) or with other network_args "
                "(conv_dim)? try --dim_from_weights")
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise TrainError(
                    f"{key} has shape {tuple(value.shape)} in the file but {tuple(own[key].shape)} here",
                    path=path, hint="use the file's network_dim/conv_dim, or --dim_from_weights")
        result = self.load_state_dict(dict(state_dict), strict=False)
        return WeightsInfo(path, len(state_dict), list(result.missing_keys), metadata)

    @classmethod
    def from_weights(cls, source: str | Path | Mapping[str, torch.Tensor], text_encoder: nn.Module | None,
                     unet: nn.Module | None, multiplier: float = 1.0) -> LoRANetwork:
        """Rebuild the network a file describes (`--dim_from_weights`) and load its weights.

        Per adapter: rank from the lora_down shape, alpha from the file (missing → rank), as in
        sd-scripts' create_network_from_weights. The network is returned unapplied.
        """
        state_dict, metadata, path = read_kohya_weights(source, sdxl=is_sdxl_unet(unet))
        modules_dim: dict[str, int] = {}
        modules_alpha: dict[str, float] = {}
        for key, value in state_dict.items():
            lora_name, _, tail = key.partition(".")
            if tail == "lora_down.weight":
                modules_dim[lora_name] = int(value.shape[0])
            elif tail == "alpha":
                modules_alpha[lora_name] = float(value)
            elif tail != "lora_up.weight":
                raise TrainError(f"{key!r} is not a LoRA tensor (lora_down/lora_up/alpha)", path=path,
                                 hint="LyCORIS/LoHa files are not supported by the built-in trainer")
        for name, rank in modules_dim.items():
            modules_alpha.setdefault(name, float(rank))
        network = cls(text_encoder, unet, multiplier=multiplier, modules_dim=modules_dim, modules_alpha=modules_alpha)
        network._load_checked(state_dict, metadata, path)
        return network

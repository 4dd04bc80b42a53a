"""Frozen Linear layers multiply through oneDNN on the CPU, not through MKL's sgemm.

Why: torch's CPU ``F.linear``/``mm`` in float32 call MKL, and MKL runs its AVX2 code on AMD CPUs (it
keeps AVX-512 for Intel's), while oneDNN, which torch already uses for convolutions, runs AVX-512 on
either. On the 2-core AMD EPYC VM of bench/bench_vs_sdscripts.py a 1024×320 @ 320×2560 product
runs at ~30–90 GFLOP/s through MKL and ~85–230 through oneDNN (one thread). A LoRA step's frozen
U-Net and text encoder are mostly such products (attention projections, feed-forwards), forward and
backward, so routing them is most of the built-in trainer's CPU lead over sd-scripts.

Only the arithmetic's order changes (float rounding, ~1e-6 relative): the layers, their weights and
what autograd computes are the same. A layer is routed only while its weight and bias are frozen,
its input is a float32 CPU tensor and torch has oneDNN; anything else takes ``F.linear`` as before.
The backward computes the input's gradient only (``grad @ W``, through oneDNN too): frozen weights
need none, which is also what autograd's own ``AddmmBackward`` skips for them.
``LORA_TUI_ONEDNN=0`` turns routing off (a bisecting aid; results equal within float rounding).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ROUTED = "_lora_tui_onednn"


def _linear_op() -> Any:
    """oneDNN's dense linear (the op torch's inductor uses on the CPU), or None when this torch lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_OP = _linear_op()


def available() -> bool:
    """Whether frozen linears can run through oneDNN here (and ``LORA_TUI_ONEDNN=0`` is not set);
    read at every call, so the switch also works on a model that is already routed."""
    return _OP is not None and os.environ.get("LORA_TUI_ONEDNN", "1") != "0"


def _mm(x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x2 @ weightᵀ + bias for a 2-D x2; weight (out, in) may be a transposed view."""
    return _OP(x2, weight, bias, "none", [], "")


class _FrozenLinear(torch.autograd.Function):
    """y = x Wᵀ + b with W, b frozen: the backward returns the input gradient only."""

    @staticmethod
    def forward(ctx: Any, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _mm(x2, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (weight,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return _mm(grad.contiguous(), weight.t(), None), None, None


def _frozen(module: nn.Linear) -> bool:
    return not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)


def linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` through oneDNN when it applies (see the module docstring), else ``F.linear``."""
    weight = module.weight
    if (x.dtype is not torch.float32 or weight.dtype is not torch.float32 or x.device.type != "cpu"
            or weight.device.type != "cpu" or x.dim() < 2 or x.numel() == 0 or not _frozen(module)
            or not available()):
        return F.linear(x, weight, module.bias)
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    y = _FrozenLinear.apply(x2, weight, module.bias)
    return y.view(*x.shape[:-1], weight.shape[0])


def route_frozen_linears(modules: Iterable[nn.Module]) -> int:
    """Give every ``nn.Linear`` in ``modules`` the oneDNN forward; returns how many were routed.

    Call before a LoRA network patches its forwards (it wraps whatever forward a layer has then).
    Routing is decided per call: a layer that is (or later becomes) trainable takes ``F.linear``, and
    so does every layer while ``LORA_TUI_ONEDNN=0``. Nothing is routed when torch lacks oneDNN.
    """
    if _OP is None:
        return 0
    count = 0
    for root in modules:
        for layer in root.modules():
            if type(layer) is nn.Linear and not getattr(layer, _ROUTED, False):
                layer.forward = _bound(layer)
                setattr(layer, _ROUTED, True)
                count += 1
    return count


def _bound(layer: nn.Linear) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear(layer, x)

    return forward

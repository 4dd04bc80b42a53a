"""Frozen Linear and 1×1 Conv2d layers multiply through oneDNN on the CPU, not through MKL's sgemm.

Why: torch's CPU ``F.linear``/``mm`` in float32 call MKL, and MKL runs its AVX2 code on AMD CPUs (it
keeps AVX-512 for Intel's), while oneDNN, which torch already uses for convolutions, runs AVX-512 on
either. On the 2-core AMD EPYC VM of bench/bench_vs_sdscripts.py a 1024×320 @ 320×2560 product
runs at ~30–90 GFLOP/s through MKL and ~85–230 through oneDNN (one thread). A LoRA step's frozen
U-Net and text encoder are mostly such products (attention projections, feed-forwards), forward and
backward, so routing them is most of the built-in trainer's CPU lead over sd-scripts. A 1×1
convolution (the U-Net's proj_in/proj_out and resnet shortcuts) is the same product per image,
W (out, in) @ X (in, H·W); torch sends those to its own im2col+MKL path on one thread, so they are
routed too (forward and input gradient, ~2× on the same machine for 320–640 channels).
A k×k convolution over a small image (≤ 256 output pixels: the U-Net's 8×8 and 4×4 levels at
256 px, 16×16 and below at 512 px) goes through oneDNN's convolution, which reorders the whole
weight (up to 118 MB for a 2560→1280 3×3) into its blocked layout on every call, forward and
backward, and so runs at 3–15 GFLOP/s there; as im2col (``F.unfold``) + the same oneDNN product on
the plain weight it runs at 40–70 (forward and input gradient alike).

Only the arithmetic's order changes (float rounding, ~1e-6 relative): the layers, their weights and
what autograd computes are the same. A layer is routed only while its weight and bias are frozen,
its input and weight are float32 CPU tensors, CPU autocast is off and torch has oneDNN; anything
else takes the layer's own forward as before.
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
        op = torch.ops.mkldnn._linear_pointwise
        # a private op: prove its signature and arithmetic once, so a torch that changed it falls back
        probe = op(torch.ones(2, 3), torch.ones(4, 3).t().contiguous().t(), None, "none", [], "")
        if probe.shape != (2, 4) or not bool((probe == 3).all()):
            return None
    except Exception:  # any failure of the probe means "do not route"
        return None
    return op


_OP = _linear_op()


def _autocast() -> bool:
    """Under CPU autocast torch would run these products in bf16: leave them to it."""
    return torch.is_autocast_enabled("cpu")


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


def _left_times(left: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """left @ mats[b] for each b, as (B, m, n): oneDNN computes input @ weightᵀ, so ``left`` is the
    input and mats[b]ᵀ (a transposed view, no copy) the weight."""
    outs = [_mm(left, mats[b].t(), None) for b in range(mats.shape[0])]
    return outs[0][None] if len(outs) == 1 else torch.stack(outs)


class _FrozenConv1x1(torch.autograd.Function):
    """y[b] = W x[b] + bias for a frozen 1×1, stride-1 convolution of NCHW images."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        w2 = weight.view(weight.shape[0], weight.shape[1])
        ctx.save_for_backward(w2)
        batch, channels, height, width = x.shape
        x3 = x.reshape(batch, channels, height * width)
        y = _left_times(w2, x3)
        if bias is not None:
            y.add_(bias.view(1, -1, 1))
        return y.view(batch, w2.shape[0], height, width)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (w2,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        batch, out, height, width = grad.shape
        g3 = grad.contiguous().view(batch, out, height * width)
        gx = _left_times(w2.t(), g3)  # dX[b] = Wᵀ @ dY[b]
        return gx.view(batch, w2.shape[1], height, width), None, None


SMALL_IMAGE = 256  # output pixels up to which a k×k convolution takes im2col + oneDNN's product


class _FrozenConvIm2col(torch.autograd.Function):
    """A frozen k×k convolution (groups 1) as im2col + a product: y[b] = W (O, C·k·k) @ cols[b]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                geometry: tuple[Any, ...]) -> torch.Tensor:
        kernel, stride, padding, dilation, out_hw = geometry
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (B, C·k·k, L)
        w2 = weight.reshape(weight.shape[0], -1)
        ctx.save_for_backward(w2)
        ctx.geometry, ctx.in_hw = geometry, tuple(x.shape[2:])
        y = _left_times(w2, cols)
        if bias is not None:
            y.add_(bias.view(1, -1, 1))
        return y.view(x.shape[0], w2.shape[0], *out_hw)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (w2,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        kernel, stride, padding, dilation, _ = ctx.geometry
        g3 = grad.reshape(grad.shape[0], grad.shape[1], -1)
        # dcols[b]ᵀ (L, C·k·k) = dY[b]ᵀ (L, O) @ W: the small dY[b]ᵀ is copied, W is used as it lies
        dcols = torch.stack([_mm(g3[b].t().contiguous(), w2.t(), None).t() for b in range(g3.shape[0])])
        gx = F.fold(dcols, ctx.in_hw, kernel, dilation=dilation, padding=padding, stride=stride)
        return gx, None, None, None


def _frozen(module: nn.Linear | nn.Conv2d) -> bool:
    return not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)


def linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` through oneDNN when it applies (see the module docstring), else ``F.linear``."""
    weight = module.weight
    if (x.dtype is not torch.float32 or weight.dtype is not torch.float32 or x.device.type != "cpu"
            or weight.device.type != "cpu" or x.dim() < 2 or x.numel() == 0 or not _frozen(module)
            or not available() or _autocast()):
        return F.linear(x, weight, module.bias)
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    y = _FrozenLinear.apply(x2, weight, module.bias)
    return y.view(*x.shape[:-1], weight.shape[0])


def _is_pointwise(conv: nn.Conv2d) -> bool:
    return (tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1 and conv.padding in ((0, 0), 0, "valid"))


def _is_plain_kxk(conv: nn.Conv2d) -> bool:
    return (conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and tuple(conv.kernel_size) != (1, 1))


def _out_hw(conv: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def conv1x1(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a 1×1 convolution through oneDNN when it applies, else the layer's own forward."""
    if not _conv_routable(module, x):
        return nn.Conv2d.forward(module, x)
    return _FrozenConv1x1.apply(x.contiguous(), module.weight, module.bias)


def conv_small(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a k×k convolution: im2col + oneDNN's product on a small image, else as before."""
    if not _conv_routable(module, x):
        return nn.Conv2d.forward(module, x)
    out_hw = _out_hw(module, x.shape[2], x.shape[3])
    if out_hw[0] * out_hw[1] > SMALL_IMAGE:
        return nn.Conv2d.forward(module, x)
    geometry = (tuple(module.kernel_size), tuple(module.stride), tuple(module.padding), tuple(module.dilation), out_hw)
    return _FrozenConvIm2col.apply(x, module.weight, module.bias, geometry)


def _conv_routable(module: nn.Conv2d, x: torch.Tensor) -> bool:
    weight = module.weight
    return (x.dtype is torch.float32 and weight.dtype is torch.float32 and x.device.type == "cpu"
            and weight.device.type == "cpu" and x.dim() == 4 and x.numel() > 0 and _frozen(module) and available()
            and not _autocast())


def route_frozen_layers(modules: Iterable[nn.Module]) -> int:
    """Give every ``nn.Linear`` and ``nn.Conv2d`` (groups 1) in ``modules`` the oneDNN forward; returns
    how many were routed.

    Call before a LoRA network patches its forwards (it wraps whatever forward a layer has then).
    Routing is decided per call: a layer that is (or later becomes) trainable takes ``F.linear``, and
    so does every layer while ``LORA_TUI_ONEDNN=0``. Nothing is routed when torch lacks oneDNN.
    """
    if _OP is None:
        return 0
    count = 0
    for root in modules:
        for layer in root.modules():
            if getattr(layer, _ROUTED, False):
                continue
            if type(layer) is nn.Linear:
                layer.forward = _bound(layer, linear)
            elif type(layer) is nn.Conv2d and _is_pointwise(layer):
                layer.forward = _bound(layer, conv1x1)
            elif type(layer) is nn.Conv2d and _is_plain_kxk(layer):
                layer.forward = _bound(layer, conv_small)
            else:
                continue
            setattr(layer, _ROUTED, True)
            count += 1
    return count


def _bound(layer: nn.Module, route: Any) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return route(layer, x)

    return forward

"""Optimizers and learning-rate schedules under sd-scripts' names and semantics.

AdamW, SGDNesterov and Lion need nothing extra (Lion is written here: it is a few lines and its
package is not always installed); AdamW8bit, Prodigy and DAdaptation use their packages when
installed and otherwise stop with the pip command. Schedules follow transformers'/diffusers'
formulas that sd-scripts uses, stepping once per optimizer step.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lora_tui.core.errors import TrainError


class Lion(Optimizer):
    """Lion (Chen et al. 2023): sign of an interpolated momentum, decoupled weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if lr <= 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.mul(beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def _package(module: str, pip_name: str, optimizer: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrainError(f"optimizer_type {optimizer} needs the {pip_name} package",
                         hint=f"pip install {pip_name}, or choose AdamW") from None


def make_optimizer(name: str, params: list[dict[str, Any]], lr: float, kwargs: dict[str, Any],
                   *, device_type: str = "cpu") -> tuple[Optimizer, str]:
    """The optimizer and the description sd-scripts stores as ``ss_optimizer``."""
    key = name.lower()
    kwargs = dict(kwargs)
    if key == "adamw":
        if "fused" not in kwargs and "foreach" not in kwargs:
            # hundreds of small LoRA tensors: one fused kernel on CUDA, batched ops on the CPU
            kwargs["fused" if device_type == "cuda" else "foreach"] = True
        opt: Optimizer = torch.optim.AdamW(params, lr=lr, **kwargs)
    elif key == "adamw8bit":
        bnb = _package("bitsandbytes", "bitsandbytes", name)
        opt = bnb.optim.AdamW8bit(params, lr=lr, **kwargs)
    elif key == "lion":
        opt = Lion(params, lr=lr, **kwargs)
    elif key == "sgdnesterov":
        kwargs.setdefault("momentum", 0.9)
        opt = torch.optim.SGD(params, lr=lr, nesterov=True, **kwargs)
    elif key == "adafactor":
        from transformers.optimization import Adafactor

        kwargs.setdefault("relative_step", True)  # sd-scripts' default: Adafactor picks its own lr
        if kwargs["relative_step"]:
            for group in params:
                group["lr"] = None
            opt = Adafactor(params, lr=None, **kwargs)
        else:
            kwargs["warmup_init"] = False
            opt = Adafactor(params, lr=lr, **kwargs)
    elif key == "prodigy":
        prodigyopt = _package("prodigyopt", "prodigyopt", name)
        opt = prodigyopt.Prodigy(params, lr=lr, **kwargs)
    elif key in ("dadaptation", "dadaptadam"):
        dadapt = _package("dadaptation", "dadaptation", name)
        opt = dadapt.DAdaptAdam(params, lr=lr, **kwargs)
    else:  # args.check refuses other names first
        raise TrainError(f"optimizer_type {name!r} is not supported")
    described = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return opt, f"{type(opt).__module__}.{type(opt).__name__}({described})"


def warmup_steps(value: Any, total: int) -> int:
    """sd-scripts' lr_warmup_steps: an int is steps, a float below 1 (or "10%") a share of the run."""
    if isinstance(value, str) and value.endswith("%"):
        return int(float(value[:-1]) / 100 * total)
    if isinstance(value, float) and value < 1:
        return int(value * total)
    return int(value or 0)


def relative_step(optimizer: Optimizer) -> bool:
    """Adafactor with relative_step computes its own lr; sd-scripts then forces the adafactor schedule."""
    return bool(optimizer.defaults.get("relative_step")) and optimizer.defaults.get("lr") is None


def make_scheduler(name: str, optimizer: Optimizer, *, total_steps: int, warmup: int, num_cycles: int = 1,
                   power: float = 1.0, initial_lr: float = 0.0) -> Any:
    """A per-optimizer-step LR multiplier with transformers' formulas for each schedule name."""
    if relative_step(optimizer):
        from transformers.optimization import AdafactorSchedule

        return AdafactorSchedule(optimizer, initial_lr=initial_lr or 0.0)
    total = max(1, total_steps)
    if name in ("constant", "adafactor") and warmup:
        raise TrainError(f"lr_scheduler {name} does not use lr_warmup_steps",
                         hint="set lr_warmup_steps = 0 or use constant_with_warmup")

    def warm(step: int) -> float | None:
        return step / max(1, warmup) if step < warmup else None

    def progress(step: int) -> float:
        return (step - warmup) / max(1, total - warmup)

    def constant(step: int) -> float:
        return 1.0

    def constant_with_warmup(step: int) -> float:
        return w if (w := warm(step)) is not None else 1.0

    def linear(step: int) -> float:
        return w if (w := warm(step)) is not None else max(0.0, 1.0 - progress(step))

    def cosine(step: int) -> float:
        if (w := warm(step)) is not None:
            return w
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress(step))))

    def cosine_with_restarts(step: int) -> float:
        if (w := warm(step)) is not None:
            return w
        p = progress(step)
        if p >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * p) % 1.0))))

    def polynomial(step: int) -> float:
        # transformers' get_polynomial_decay_schedule_with_warmup with lr_end 1e-7
        if (w := warm(step)) is not None:
            return w
        lr_init = optimizer.defaults["lr"] or 1.0
        lr_end = 1e-7
        if step > total:
            return lr_end / lr_init
        remaining = 1 - (step - warmup) / max(1, total - warmup)
        return ((lr_init - lr_end) * remaining ** power + lr_end) / lr_init

    schedules = {"constant": constant, "adafactor": constant, "constant_with_warmup": constant_with_warmup,
                 "linear": linear, "cosine": cosine, "cosine_with_restarts": cosine_with_restarts,
                 "polynomial": polynomial}
    if name not in schedules:
        raise TrainError(f"lr_scheduler {name!r} is not supported")
    return LambdaLR(optimizer, schedules[name])

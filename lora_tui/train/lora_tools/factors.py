"""A LoRA file as per-module factors, and the SVD that re-factors them.

Every tool here (resize, merge) needs the SVD of ``up @ down`` per module. That product has rank
at most r (the LoRA's rank), so instead of a full SVD of an out×in matrix (what sd-scripts'
resize_lora.py does) the SVD is taken through thin QR factors of ``up`` and ``downᵀ`` and an r×r
SVD: the same singular values and vectors (up to sign and float error), at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_tui.core.errors import LoraTuiError

DOWN, UP, ALPHA = ".lora_down.weight", ".lora_up.weight", ".alpha"


class LoraToolError(LoraTuiError):
    """A LoRA file or option the tools cannot use."""


@dataclass
class Factors:
    """One module: up (out×r[×1×1]), down (r×in[×k×k]), alpha (None → rank)."""

    name: str
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def conv(self) -> bool:
        return self.down.dim() == 4

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha else self.rank) / self.rank

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(up as out×r, down as r×(in·k·k)), float32."""
        return self.up.reshape(self.up.shape[0], -1).float(), self.down.reshape(self.rank, -1).float()

    def delta(self) -> torch.Tensor:
        """scale · up @ down, shaped like the base weight (conv: out×in×k×k)."""
        up, down = self.matrices()
        full = (up @ down) * self.scale
        if self.conv:
            return full.reshape(self.up.shape[0], *self.down.shape[1:])
        return full


def split_modules(state_dict: Mapping[str, torch.Tensor], path: Path | None = None) -> dict[str, Factors]:
    """Group a kohya-style state dict into modules; anything else is a one-line error."""
    names: dict[str, None] = {}
    for key in state_dict:
        for tail in (DOWN, UP, ALPHA):
            if key.endswith(tail):
                names.setdefault(key[: -len(tail)])
                break
        else:
            if key.endswith(".dora_scale"):
                raise LoraToolError(f"{key!r}: DoRA (dora_scale) LoRAs are not supported", path=path,
                                    hint="only plain LoRA (lora_down/lora_up/alpha) files")
            raise LoraToolError(f"{key!r} is not a kohya LoRA tensor (lora_down/lora_up/alpha)", path=path,
                                hint="LyCORIS (LoHa/LoKr) files are not supported; convert diffusers/peft files "
                                     "first with `lora-tui lora convert FILE --to kohya`")
    modules = {}
    for name in names:
        down, up = state_dict.get(name + DOWN), state_dict.get(name + UP)
        if down is None or up is None:
            raise LoraToolError(f"{name} has no {'lora_down' if down is None else 'lora_up'} weight", path=path,
                                hint="the file is incomplete")
        alpha = state_dict.get(name + ALPHA)
        modules[name] = Factors(name, down, up, None if alpha is None else float(alpha))
    if not modules:
        raise LoraToolError("no LoRA modules in this file", path=path)
    return modules


def factored_svd(up: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """U, S, Vh of ``up @ down`` (out×r, r×n) through thin QRs: U out×k, S k, Vh k×n, k ≤ r."""
    qu, ru = torch.linalg.qr(up)  # out×a, a×r
    qd, rd = torch.linalg.qr(down.T)  # n×b, b×r
    u_small, s, vh_small = torch.linalg.svd(ru @ rd.T, full_matrices=False)
    return qu @ u_small, s, vh_small @ qd.T


def to_factors(name: str, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int, alpha: float,
               like: Factors) -> Factors:
    """Keep `rank` singular triplets; up = U·S (sd-scripts' convention), shaped like `like`."""
    up = u[:, :rank] * s[:rank]
    down = vh[:rank]
    if like.conv:
        up = up.reshape(up.shape[0], rank, 1, 1)
        down = down.reshape(rank, *like.down.shape[1:])
    return Factors(name, down.contiguous(), up.contiguous(), alpha)


def to_state_dict(modules: Mapping[str, Factors], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, f in modules.items():
        out[name + DOWN] = f.down.to(dtype).contiguous()
        out[name + UP] = f.up.to(dtype).contiguous()
        out[name + ALPHA] = torch.tensor(float(f.alpha if f.alpha is not None else f.rank)).to(dtype)
    return out


def output_path(src: Path, out: str | None, suffix: str, *, in_place: bool, force: bool) -> Path:
    """Where a tool writes: --out, else `<stem>-<suffix>.safetensors` beside the input; never the
    input itself unless --in-place, never an existing file unless --force."""
    if in_place:
        if out:
            raise LoraToolError("--in-place and --out exclude each other", hint="drop one of them")
        return src
    target = Path(out) if out else src.with_name(f"{src.stem}-{suffix}.safetensors")
    if target.exists() and target.resolve() == src.resolve():
        raise LoraToolError("the output would overwrite the input", path=target,
                            hint="choose another --out, or pass --in-place")
    if target.exists() and not force:
        raise LoraToolError("output file exists", path=target, hint="choose another --out or pass --force")
    return target


DTYPES = {"float": torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_dtype(name: str | None, state_dict: Mapping[str, torch.Tensor]) -> torch.dtype:
    """--save-precision, else the input's own float dtype."""
    if name:
        return DTYPES[name]
    for value in state_dict.values():
        if value.dtype.is_floating_point and value.dim() > 0:
            return value.dtype
    return torch.float32

"""`lora-tui lora resize`: lower a LoRA's rank by SVD, as sd-scripts' networks/resize_lora.py does.

Same semantics (checked against its source): per module the product up·down is decomposed; the
new rank is --dim, or chosen per module by a dynamic method capped at --dim (sv_ratio: singular
values above S₀/VALUE; sv_fro: the smallest rank keeping VALUE of the Frobenius norm; sv_cumulative:
the smallest rank keeping VALUE of ΣS); a zero module gets rank 1; up = U·S, down = Vh; and the new
alpha is scale·new_rank, so alpha/rank (the strength the file applies) is unchanged. Conv modules
(4-D, 1×1 or 3×3) use --conv-dim (default --dim). The metadata says what was done in sd-scripts'
words (ss_training_comment, ss_network_dim/alpha, "Dynamic" for dynamic methods).

Unlike sd-scripts the SVD goes through thin QR factors (factors.factored_svd): exact where
sd-scripts switches to a randomized svd_lowrank on big matrices, and much faster. It yields only the
r non-trivial singular values, not sd-scripts' min(out, in) with zeros after r; the rank choices
are the same except at a target of exactly 1.0 (sv_cumulative/sv_fro), where float rounding can
make sd-scripts pick one zero direction more (capped by --dim either way).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_tui.train.lora_tools.factors import (
    Factors,
    LoraToolError,
    factored_svd,
    split_modules,
    to_factors,
)

MIN_SV = 1e-6
METHODS = ("sv_ratio", "sv_fro", "sv_cumulative")


@dataclass
class ModuleResult:
    """Per-module outcome, for the printout and the tests."""

    name: str
    old_rank: int
    new_rank: int
    new_alpha: float
    sum_retained: float
    fro_retained: float
    max_ratio: float

    def line(self) -> str:
        return (f"{self.name:<72} {self.old_rank:>4} → {self.new_rank:<4} fro {self.fro_retained:6.1%}  "
                f"ΣS {self.sum_retained:6.1%}  S₀/Sₙ {self.max_ratio:.1f}")


def _clamp(index: int, length: int) -> int:
    return max(0, min(index, length - 1))


def choose_rank(s: torch.Tensor, max_rank: int, method: str | None, param: float | None) -> int:
    """sd-scripts' rank_resize: the new rank for singular values `s` (descending)."""
    if float(s[0]) <= MIN_SV:
        return 1
    if method == "sv_ratio":
        rank = _clamp(int(torch.sum(s > s[0] / param).item()) - 1, len(s)) + 1
    elif method == "sv_cumulative":
        cum = torch.cumsum(s, 0) / float(s.sum())
        rank = _clamp(int(torch.searchsorted(cum, torch.tensor(float(param)))), len(s)) + 1
    elif method == "sv_fro":
        sq = s.pow(2)
        cum = torch.cumsum(sq, 0) / float(sq.sum())
        rank = _clamp(int(torch.searchsorted(cum, torch.tensor(float(param) ** 2))), len(s)) + 1
    else:
        rank = max_rank
    return min(rank, max_rank)


def resize_module(f: Factors, max_rank: int, method: str | None, param: float | None,
                  device: torch.device) -> tuple[Factors, ModuleResult]:
    up, down = f.matrices()
    u, s, vh = factored_svd(up.to(device), down.to(device))
    rank = choose_rank(s, max_rank, method, param)
    rank_kept = min(rank, len(s))  # a rank above the module's own keeps everything there is
    alpha = f.scale * rank
    values = [abs(v) for v in s.tolist()]  # the figures in plain floats: r numbers, no tensor calls
    total = sum(values)
    fro = math.sqrt(math.fsum(v * v for v in values))
    kept_fro = math.sqrt(math.fsum(v * v for v in values[:rank_kept]))
    result = ModuleResult(
        name=f.name, old_rank=f.rank, new_rank=rank, new_alpha=alpha,
        sum_retained=sum(values[:rank_kept]) / total if total else 1.0,
        fro_retained=kept_fro / fro if fro else 1.0,
        max_ratio=values[0] / values[rank_kept - 1] if values[rank_kept - 1] else math.inf)
    if rank > rank_kept:  # pad with zero directions so the file says the rank that was asked for
        u = torch.cat([u, torch.zeros(u.shape[0], rank - rank_kept, device=u.device)], 1)
        s = torch.cat([s, torch.zeros(rank - rank_kept, device=s.device)])
        vh = torch.cat([vh, torch.zeros(rank - rank_kept, vh.shape[1], device=vh.device)], 0)
    new = to_factors(f.name, u.cpu(), s.cpu(), vh.cpu(), rank, alpha, f)
    return new, result


def resize(state_dict: Mapping[str, torch.Tensor], *, dim: int, conv_dim: int | None = None,
           method: str | None = None, param: float | None = None, device: str | None = None,
           path: Path | None = None) -> tuple[dict[str, Factors], list[ModuleResult]]:
    """Resize every module; returns the new modules and one result per module, in file order."""
    if dim < 1 or (conv_dim is not None and conv_dim < 1):
        raise LoraToolError("--dim must be at least 1", hint="e.g. --dim 32")
    if method is not None and method not in METHODS:
        raise LoraToolError(f"unknown dynamic method {method!r}", hint="use " + ", ".join(METHODS))
    if method is not None and (param is None or param <= 0):
        raise LoraToolError(f"--dynamic {method} needs a positive value", hint="e.g. --dynamic sv_fro 0.9")
    dev = torch.device(device or "cpu")
    modules = split_modules(state_dict, path)
    out: dict[str, Factors] = {}
    results = []
    with torch.no_grad():
        for name, f in modules.items():
            limit = (conv_dim or dim) if f.conv else dim
            out[name], result = resize_module(f, limit, method, param, dev)
            results.append(result)
    return out, results


def resize_metadata(metadata: Mapping[str, str], results: list[ModuleResult], *, dim: int,
                    conv_dim: int | None, method: str | None, param: float | None) -> dict[str, str]:
    """sd-scripts' metadata edits, plus `lora_tui.resize` (JSON) with the figures."""
    meta = dict(metadata)
    old_dim = max(r.old_rank for r in results)
    comment = meta.get("ss_training_comment", "")
    comment = "" if comment == "None" else comment
    if method is None:
        conv = "" if conv_dim in (None, dim) else f" (conv: {conv_dim})"
        meta["ss_training_comment"] = f"dimension is resized from {old_dim} to {dim}{conv}; {comment}"
        meta["ss_network_dim"] = str(dim)
        meta["ss_network_alpha"] = str(results[-1].new_alpha)
    else:
        meta["ss_training_comment"] = f"Dynamic resize with {method}: {param} from {old_dim}; {comment}"
        meta["ss_network_dim"] = "Dynamic"
        meta["ss_network_alpha"] = "Dynamic"
    fro = [r.fro_retained for r in results]
    meta["lora_tui.resize"] = json.dumps({
        "from_dim": old_dim, "dim": dim, "conv_dim": conv_dim, "method": method, "param": param,
        "fro_retained_mean": sum(fro) / len(fro), "fro_retained_min": min(fro)})
    return meta

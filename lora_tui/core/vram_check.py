"""The doctor's VRAM finding for a project: its planned settings against the card's free memory.

Torch-free (NVML through core.gpu), so `lora-tui doctor` and any screen can say it. The plan comes
from the project's [training] values and its steps report (the largest bucket, the largest batch);
the card is the smallest free memory among the GPUs the run will use ([launch] gpu_ids, else the
first num_processes). Without an NVIDIA driver the estimate is compared with an assumed 24 GB card,
and the finding says it is assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lora_tui.core import vram
from lora_tui.core.findings import OK, WARNING, Finding
from lora_tui.core.gpu import GpuMemory, gpu_memory

TOPIC = "vram"


def largest_bucket(report: Any, family: str) -> tuple[int, int, int, str]:
    """(width, height, batch, where) of the biggest step the steps report plans."""
    buckets: list[tuple[int, int]] = []
    batch = 1
    resolutions: list[tuple[int, int]] = []
    for dataset in getattr(report, "datasets", None) or []:
        buckets += list(dataset.buckets)
        batch = max(batch, int(dataset.batch_size or 1))
        if dataset.resolution:
            resolutions.append(tuple(dataset.resolution))
    if buckets:
        w, h = max(buckets, key=lambda b: (b[0] * b[1], b))
        return w, h, batch, f"largest bucket {w}×{h}"
    if resolutions:
        w, h = max(resolutions, key=lambda r: r[0] * r[1])
        return w, h, batch, f"resolution {w}×{h}"
    side = 1024 if family == "sdxl" else 512
    return side, side, batch, f"{side}×{side} assumed (no images sized yet)"


def card(project: Any, gpus: list[GpuMemory] | None) -> tuple[int, str, bool]:
    """(free bytes, which card, assumed?) for the GPUs the run uses."""
    if not gpus:
        return vram.ASSUMED_CARD_BYTES, "an assumed 24 GB card (no GPU here)", True
    ids = [s.strip() for s in str(project.launch.get("gpu_ids") or "").split(",") if s.strip().isdigit()]
    chosen = [g for g in gpus if str(g.index) in ids] if ids else gpus[: max(1, int(project.launch.get(
        "num_processes", 1) or 1))]
    gpu = min(chosen or gpus, key=lambda g: g.free)
    return gpu.free, f"{vram.gib(gpu.free)} free on GPU {gpu.index} ({gpu.name})", False


def check_vram(project: Any, family: str, report: Any = None, *,
               probe: Callable[[], list[GpuMemory] | None] = gpu_memory) -> list[Finding]:
    """One finding: the estimate, and when it exceeds the card's free memory, the knob that fixes it."""
    if family not in vram.FAMILIES:
        return []
    width, height, batch, where = largest_bucket(report, family)
    plan = vram.plan_from_settings(family, project.training, batch=batch, width=width, height=height)
    estimate = vram.estimate(plan)
    free, which, assumed = card(project, probe())
    _, known = vram.optimizer_state_bytes(plan.optimizer)
    basis = (f"{where}, batch {plan.batch}, {plan.mixed_precision if plan.mixed_precision != 'no' else 'fp32'}"
             + (", gradient checkpointing" if plan.gradient_checkpointing else "")
             + ("" if known else f", optimizer {plan.optimizer} counted as Adam-like"))
    text = f"{estimate.text()} for {basis}; unverified on a GPU"
    fix = vram.advice(plan, free)
    if fix is None:
        return [Finding.about(TOPIC, OK, f"{text}; fits {which}")]
    settings, after = fix
    fits = after.total <= free
    change = "set " + " and ".join(settings)
    tail = f" → {vram.gib(after.total)}" + ("" if fits else ", still over: a card with more memory is needed")
    return [Finding.about(TOPIC, WARNING, f"{text}; more than {which}", f"{change}{tail}")]

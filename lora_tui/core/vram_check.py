"""The doctor's VRAM finding for a project: its planned settings against the card's free memory.

Torch-free (NVML through core.gpu), so `lora-tui doctor` and any screen can say it. The plan comes
from the project's [training] values and its steps report (the largest bucket, the largest batch);
the card is the smallest free memory among the GPUs the run will use ([launch] gpu_ids, else the
first num_processes). Without an NVIDIA driver the estimate is compared with an assumed 24 GB card,
and the finding says it is assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lora_tui.core import vram
from lora_tui.core.findings import OK, WARNING, Finding
from lora_tui.core.gpu import GpuMemory, gpu_memory
from lora_tui.core.model_family import FamilyError, read_safetensors_header

TOPIC = "vram"
HEADROOM = 0.9  # an estimate above 90 % of the free memory is a warning: it is a lower bound


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


def card(project: Any, gpus: list[GpuMemory] | None) -> tuple[int, str]:
    """(free bytes, which card) for the GPUs the run uses; without a GPU, the assumed 24 GB card."""
    if not gpus:
        return vram.ASSUMED_CARD_BYTES, "an assumed 24 GB card (no GPU here)"
    ids = [s.strip() for s in str(project.launch.get("gpu_ids") or "").split(",") if s.strip().isdigit()]
    chosen = [g for g in gpus if str(g.index) in ids] if ids else gpus[: max(1, int(project.launch.get(
        "num_processes", 1) or 1))]
    gpu = min(chosen or gpus, key=lambda g: g.free)
    return gpu.free, f"{vram.gib(gpu.free)} free on GPU {gpu.index} ({gpu.name})"


def unet_params_in(model: Path | None) -> int | None:
    """U-Net parameters of a safetensors model (single file or Diffusers folder) from headers only."""
    if model is None:
        return None
    if model.is_dir():
        files, prefix = sorted((model / "unet").glob("*.safetensors")), ""
    elif model.suffix.lower() == ".safetensors":
        files, prefix = [model], "model.diffusion_model."
    else:
        return None
    total = 0
    try:
        for file in files:
            header = read_safetensors_header(file)
            total += sum(math.prod(v.get("shape") or [1]) for k, v in header.items()
                         if k != "__metadata__" and isinstance(v, dict) and k.startswith(prefix))
    except (FamilyError, TypeError, ValueError):
        return None
    return total or None


@dataclass(frozen=True)
class Assessment:
    """The estimate for a project's planned settings against the card, in parts a screen can lay out.

    `finding()` joins them into the doctor's one line; the train screen shows them on three lines and
    asks before a launch when `over` (a test model's estimate is of the full-size model: never over)."""

    estimate: vram.Estimate
    basis: str  # "largest bucket 512×512, batch 2, fp32"
    scope: str  # "" or " of a full-size SD1.x model (…: a test model)"
    which: str  # "an assumed 24 GB card (no GPU here)" or "20.1 GiB free on GPU 0 (…)"
    assumed: bool  # no GPU here: the card is the assumed one
    verdict: str  # "fits …", "fits … with under 10% to spare (…)", "more than …"
    fix: str | None  # "set … → 11.3 GiB", the doctor's advice
    severity: str
    over: bool  # the estimate exceeds the card's free memory, for this model

    @property
    def text(self) -> str:
        return f"{self.estimate.text()}{self.scope} for {self.basis}; unverified on a GPU"

    def finding(self) -> Finding:
        return Finding.about(TOPIC, self.severity, f"{self.text}; {self.verdict}", self.fix)


def check_vram(project: Any, family: str, report: Any = None, *,
               probe: Callable[[], list[GpuMemory] | None] | None = None) -> list[Finding]:
    """One finding: the estimate, and when it exceeds the card's free memory, the knob that fixes it."""
    found = assess(project, family, report, probe=probe)
    return [found.finding()] if found else []


def vram_family(project: Any) -> str:
    """The estimate's family for a project's base model, torch-free, as doctor picks it: the model's
    header when it can be read (SD2-v counts as SD2), else the [model] v2 flag."""
    from lora_tui.core.model_family import SD2, SD2_V, family_of_value

    found = family_of_value(project.model.get("pretrained_model_name_or_path"), project.root)
    if found == SD2_V:
        return SD2
    if found in vram.FAMILIES:
        return found
    return "sd_v2" if project.model.get("v2") else "sd_v1"


def assess(project: Any, family: str, report: Any = None, *,
           probe: Callable[[], list[GpuMemory] | None] | None = None) -> Assessment | None:
    """The estimate against the card, and when it exceeds the card's free memory, the knob that fixes it.

    The estimate is for the family's full-size architecture. A model whose U-Net is far smaller (a
    tiny test model) gets the full-size figure, said to be that, as information: it tells a user
    trying the loop on a test model what the real one will need, and nothing here could fail.
    None for a family without measurements."""
    if family not in vram.FAMILIES:
        return None
    width, height, batch, where = largest_bucket(report, family)
    training = dict(project.training)
    if (getattr(project, "launch", None) or {}).get("mixed_precision"):  # [launch] wins, as in the launch command
        training["mixed_precision"] = project.launch["mixed_precision"]
    plan = vram.plan_from_settings(family, training, batch=batch, width=width, height=height)
    estimate = vram.estimate(plan)
    gpus = (probe or gpu_memory)()
    free, which = card(project, gpus)
    _, known = vram.optimizer_state_bytes(plan.optimizer)
    precision = plan.mixed_precision if plan.mixed_precision != "no" else "fp32"
    basis = (f"{where}, batch {plan.batch}, {precision}" + (", gradient checkpointing" if plan.gradient_checkpointing
                                                            else "")
             + ("" if known else f", optimizer {plan.optimizer} counted as Adam-like"))
    found = unet_params_in(getattr(project, "model_path", None))
    full = vram.FAMILIES[family].unet_params
    label = {"sd_v1": "SD1.x", "sd_v2": "SD2.x", "sdxl": "SDXL"}[family]
    reference = getattr(project, "model_reference", None)  # a built-in model is a tiny test model, built or not
    scope = ""
    if reference:
        scope = f" of a full-size {label} model ({reference} is a test model)"
    elif found is not None and not 0.9 * full <= found <= 1.1 * full:
        scope = f" of a full-size {label} model (this one's U-Net has {found:,} parameters: a test model)"
    tiny = bool(scope)
    severity = OK if tiny else WARNING
    made = partial(Assessment, estimate=estimate, basis=basis, scope=scope, which=which, assumed=not gpus)
    if estimate.total <= free:
        if estimate.total <= HEADROOM * free:
            return made(verdict=f"fits {which}", fix=None, severity=OK, over=False)
        fix = vram.advice(plan, int(HEADROOM * free))  # the estimate is a lower bound: keep some room
        hint = ("set " + " and ".join(fix[0]) + f" → {vram.gib(fix[1].total)}") if fix else None
        return made(verdict=f"fits {which} with under {1 - HEADROOM:.0%} to spare (the estimate "
                          "is a lower bound)", fix=hint, severity=severity, over=False)
    settings, after = vram.advice(plan, free) or ([], estimate)
    change = "set " + " and ".join(settings) + f" → {vram.gib(after.total)}"
    if after.total > free:
        change += ", still over: a card with more free memory is needed"
    return made(verdict=f"more than {which}", fix=change, severity=severity, over=not tiny)

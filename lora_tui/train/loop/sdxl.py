"""The SDXL parts of a training step and of its preparation, with sdxl_train_network.py's semantics.

Per batch (sdxl_train_network.call_unet): the text outputs of both encoders (cached per image,
memoised per caption while frozen, or encoded with gradients when a text encoder trains), the
cross-attention states concatenated (CLIP-L 768 + bigG 1280), and the added vector of bigG's pooled
projection and the six size numbers of each image — original size (h, w), crop top-left (top, left),
target size (h, w) — which the data layer carries per image as sd-scripts computes them (the
letterboxed crop of the bucket, mirrored for a flipped image). The U-Net embeds the size numbers
itself with sd-scripts' sinusoids; they are passed in float32 so a large original size is not
rounded by a 16-bit training dtype.

Before training: the family's settings checks (core.family_checks, the lint rules `lora-tui check`
shows, so the trainer refuses in the same words), and text-encoder output caching.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from lora_tui.core.errors import TrainError
from lora_tui.core.family_checks import TE_CACHE_CONFLICTS, family_problems
from lora_tui.core.findings import ERROR
from lora_tui.core.model_family import SDXL
from lora_tui.train.data import te_cache
from lora_tui.train.data.batches import TrainData
from lora_tui.train.loop.events import RunWriter
from lora_tui.train.model.sdxl_text import SdxlTextEncoding, time_ids


def caches_text_outputs(args: Any) -> bool:
    """`cache_text_encoder_outputs_to_disk` turns `cache_text_encoder_outputs` on (sd-scripts does so)."""
    return bool(args.cache_text_encoder_outputs or args.cache_text_encoder_outputs_to_disk)


def check_settings(args: Any, data: TrainData, writer: RunWriter, *, family: str) -> None:
    """sdxl_train_network.py's assertions, as `lora-tui check` words them; its warnings as warn events.

    On an SD1/SD2 model only SDXL-only options are refused (train_network.py would ignore them)."""
    if family != SDXL:
        for problem in family_problems(family, args.values, backend="builtin"):
            if problem.code == "sdxl-only-option":
                raise TrainError(problem.message, hint=problem.fix)
        return
    subsets: dict[str, dict[str, Any]] = {}
    for ds in data.datasets:
        for entry in ds.entries:
            opts = entry.subset
            subsets.setdefault(opts.label, {"label": opts.label,
                                            **{k: getattr(opts.caption, k) for k in TE_CACHE_CONFLICTS}})
    for problem in family_problems(SDXL, args.values, backend="builtin", subsets=subsets.values()):
        if problem.severity == ERROR:
            raise TrainError(problem.message, hint=problem.fix)
        writer.event("warn", code=problem.code, message=problem.message)
        writer.say(f"warning: {problem.message}")


class SdxlConditioning:
    """Turns a batch into the U-Net's prediction with SDXL's two conditionings."""

    def __init__(self, text: SdxlTextEncoding, *, train_te: bool) -> None:
        self.text = text
        self.train_te = train_te

    def predict(self, unet: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, batch: dict[str, Any],
                device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        cached = batch.get("te_outputs")
        if cached is not None:
            hidden1, hidden2, pool2 = (t.to(device) for t in cached)
        else:
            hidden1, hidden2, pool2 = self.text.outputs(batch["captions"], device, frozen=not self.train_te)
        states = torch.cat([hidden1, hidden2], dim=-1).to(dtype)
        ids = time_ids(batch["original_sizes_hw"], batch["crop_top_lefts"], batch["target_sizes_hw"]).to(device)
        added = {"text_embeds": pool2.to(dtype), "time_ids": ids}
        return unet(noisy.to(dtype), timesteps, states, added_cond_kwargs=added).sample


def cache_text_outputs(args: Any, data: TrainData, model: Any, text: SdxlTextEncoding, accelerator: Any,
                       writer: RunWriter, should_stop: Callable[[], bool] | None) -> None:
    """Encode every image's caption once with both frozen encoders, then move them off the device in
    float32 (sd-scripts: the encoders are not needed again until sampling)."""
    from lora_tui.train.loop.setup import StopRequested

    device = accelerator.device

    def encode(captions: list[str]) -> te_cache.Outputs:
        with accelerator.autocast():
            return text.outputs(captions, device, frozen=False)

    def progress(_done: int, _total: int) -> None:
        if should_stop is not None and should_stop():
            raise StopRequested

    started = time.monotonic()
    entries = [e for ds in data.datasets for e in ds.entries]
    with accelerator.main_process_first():
        stats = te_cache.cache_outputs(entries, encode, to_disk=bool(args.cache_text_encoder_outputs_to_disk),
                                       batch_size=int(args.vae_batch_size or 1), progress=progress)
    writer.say(f"cached text-encoder outputs: {stats.encoded} encoded, {stats.reused} reused from disk "
               f"in {time.monotonic() - started:.1f} s")
    for encoder in model.text_encoders:
        encoder.to("cpu", torch.float32)


def network_text_encoders(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """What the LoRA network is given as SDXL's text encoder: the pair (`lora_te1_…`, `lora_te2_…`)."""
    return tuple(model.text_encoders)

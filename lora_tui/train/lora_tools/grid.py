"""`lora-tui grid RUN`: which checkpoint, at which strength? Every chosen checkpoint × weight ×
prompt drawn with the run's base model and the trainer's own sampling code (same prompt syntax,
same samplers; an SDXL base loads and draws as SDXL training samples do), one labelled grid PNG per
prompt in the run's `grid/`, recorded by a `grid` event.
Every cell of one prompt uses the same seed, so only the LoRA (which checkpoint, what strength)
changes between cells. `grid/grid.json` lists the cells for the TUI and for scripts.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.fsio import atomic_write_bytes, atomic_write_text
from lora_tui.runs import contract

GRID_DIR = "grid"
MANIFEST = "grid.json"
DEFAULT_SEED = 1234


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int | None
    epoch: int | None

    @property
    def label(self) -> str:
        if self.step is not None:
            return f"step {self.step}"
        return self.path.stem


@dataclass
class RunFacts:
    """What the grid needs from a run: its model, flags and saved LoRAs."""

    run_dir: Path
    model: str
    v2: bool
    v_parameterization: bool
    clip_skip: int | None
    sampler: str
    prompts_file: Path | None
    checkpoints: list[Checkpoint]
    tokenizer_cache_dir: str | None = None


def read_run(run_dir: Path) -> RunFacts:
    from lora_tui.train.loop.args import read_config_file

    args_file = run_dir / "args.toml"
    if not args_file.is_file():
        raise LoraTuiError("the run has no args.toml", path=run_dir, hint="give a run folder made by lora-tui train")
    args = read_config_file(args_file)
    model = args.get("pretrained_model_name_or_path")
    if not model:
        raise LoraTuiError("args.toml names no base model", path=args_file)
    seen: dict[Path, Checkpoint] = {}
    for event in contract.iter_all_events(run_dir):
        if event.get("kind") == "save" and event.get("type", "lora") == "lora" and event.get("path"):
            path = Path(str(event["path"]))
            if path.suffix == ".safetensors" and path.is_file():
                seen[path.resolve()] = Checkpoint(path, contract.as_int(event.get("step")),
                                                  contract.as_int(event.get("epoch")))
    if not seen:  # sd-scripts runs or hand-made folders: the files themselves
        for path in sorted((run_dir / "output").glob("*.safetensors")):
            m = re.search(r"-step(\d+)$", path.stem)
            seen[path.resolve()] = Checkpoint(path, int(m.group(1)) if m else None, None)
    if not seen:
        raise LoraTuiError("the run has saved no LoRA yet", path=run_dir / "output",
                           hint="wait for a save (save_every_n_steps/epochs) or the end of training")
    checkpoints = sorted(seen.values(), key=lambda c: (c.step is None, c.step or 0, c.path.name))
    prompts = args.get("sample_prompts")
    prompts_file = Path(str(prompts)) if prompts else None
    if prompts_file is not None and not prompts_file.is_absolute():
        prompts_file = run_dir / prompts_file
    cache = args.get("tokenizer_cache_dir")
    return RunFacts(run_dir, str(model), bool(args.get("v2")), bool(args.get("v_parameterization")),
                    args.get("clip_skip"), str(args.get("sample_sampler") or "ddim"), prompts_file, checkpoints,
                    str(cache) if cache else None)


def choose(checkpoints: list[Checkpoint], spec: str) -> list[Checkpoint]:
    """all | last:N | STEP,STEP,… (steps as saved)."""
    spec = spec.strip()
    if spec == "all":
        return checkpoints
    if spec.startswith("last:"):
        try:
            n = int(spec[5:])
        except ValueError:
            n = 0
        if n < 1:
            raise LoraTuiError(f"bad --checkpoints {spec!r}", hint="last:N with N ≥ 1, e.g. last:3")
        return checkpoints[-n:]
    try:
        steps = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise LoraTuiError(f"bad --checkpoints {spec!r}", hint="all, last:N, or steps like 500,1000") from None
    by_step = {c.step: c for c in checkpoints}
    missing = [s for s in steps if s not in by_step]
    if missing:
        have = ", ".join(str(c.step) for c in checkpoints if c.step is not None) or "none"
        raise LoraTuiError(f"no checkpoint saved at step {missing[0]}", hint=f"saved steps: {have}")
    return [by_step[s] for s in steps]


def compose(cells: list[list[Path]], row_labels: list[str], col_labels: list[str], title: str) -> bytes:
    """One PNG: a title line, column labels on top, row labels on the left."""
    from PIL import Image, ImageDraw

    images = [[Image.open(p).convert("RGB") for p in row] for row in cells]
    w, h = images[0][0].size
    left, top, pad = 90, 36, 4
    grid = Image.new("RGB", (left + len(col_labels) * (w + pad), top + len(row_labels) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((4, 2), title[:120], fill="black")
    for j, label in enumerate(col_labels):
        draw.text((left + j * (w + pad) + 2, 18), label, fill="black")
    for i, label in enumerate(row_labels):
        draw.text((4, top + i * (h + pad) + h // 2 - 6), label, fill="black")
        for j, img in enumerate(images[i]):
            grid.paste(img, (left + j * (w + pad), top + i * (h + pad)))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def _drawer(base: Any, facts: RunFacts, device: Any, dtype: Any, sampler: str) -> Any:
    """`draw(prompts, out_dir, network)` with the trainer's sampling code for the base model's family."""
    from lora_tui.train.loop.sampling import generate_samples

    if getattr(base, "is_sdxl", False):
        from lora_tui.train.loop.sdxl_sampling import generate_sdxl_samples

        def draw_sdxl(prompts: list[Any], out_dir: Path, network: Any) -> list[tuple[Path, Any]]:
            return generate_sdxl_samples(model=base, prompts=prompts, out_dir=out_dir, output_name=None, step=0,
                                         epoch=None, device=device, dtype=dtype, sampler=sampler, network=network)
        return draw_sdxl

    def draw_sd(prompts: list[Any], out_dir: Path, network: Any) -> list[tuple[Path, Any]]:
        return generate_samples(
            tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae, unet=base.unet,
            prompts=prompts, out_dir=out_dir, output_name=None, step=0, epoch=None, device=device, dtype=dtype,
            sampler=sampler, v_parameterization=facts.v_parameterization, clip_skip=facts.clip_skip,
            network=network)
    return draw_sd


def render(run_dir: Path, *, prompts_file: Path | None = None, weights: list[float] | None = None,
           checkpoints: str = "all", seed: int | None = None, steps: int | None = None, sampler: str | None = None,
           size: tuple[int, int] | None = None, device: str | None = None,
           progress: Any = None) -> dict[str, Any]:
    """Draw the grid; returns the manifest (also written to grid/grid.json)."""
    import torch

    from lora_tui.train.loop.sampling import load_prompts
    from lora_tui.train.model.family import load_training_model
    from lora_tui.train.network.lora import LoRANetwork

    facts = read_run(run_dir)
    chosen = choose(facts.checkpoints, checkpoints)
    source = prompts_file or facts.prompts_file
    if source is None:
        raise LoraTuiError("the run has no sample prompts", path=run_dir / "args.toml",
                           hint="give --prompts FILE (sd-scripts' .txt/.toml/.json prompt syntax)")
    prompts = load_prompts(source)
    if not prompts:
        raise LoraTuiError("no prompts in the file", path=source)
    weights = weights or [1.0]
    fixed = []
    for p in prompts:
        p = replace(p, seed=seed if seed is not None else (p.seed if p.seed is not None else DEFAULT_SEED))
        if steps:
            p = replace(p, steps=steps)
        if size:
            p = replace(p, width=size[0], height=size[1])
        fixed.append(p)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    # The run's family decides loader and sampler: an SDXL base (folder or single file) loads through
    # sdxl_load and draws with the trainer's SDXL sampling, an SD1/SD2 one as before.
    base = load_training_model(facts.model, v2=facts.v2, v_parameterization=facts.v_parameterization,
                               tokenizer_cache_dir=facts.tokenizer_cache_dir)
    draw = _drawer(base, facts, dev, dtype, sampler or facts.sampler)
    text_encoder = tuple(base.text_encoders) if getattr(base, "is_sdxl", False) else base.text_encoder
    out = run_dir / GRID_DIR
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{os.getpid()}"
    table: dict[int, list[list[Path]]] = {p.index: [] for p in fixed}
    try:
        for c_i, ckpt in enumerate(chosen):
            net = LoRANetwork.from_weights(ckpt.path, text_encoder, base.unet)
            net.apply_to()
            rows: dict[int, list[Path]] = {p.index: [] for p in fixed}
            for weight in weights:
                net.set_multiplier(weight)
                drawn = draw(fixed, tmp, net)
                for path, prompt in drawn:
                    cell = cells_dir / f"p{prompt.index:02d}_{ckpt.path.stem}_w{weight:g}.png"
                    os.replace(path, cell)
                    rows[prompt.index].append(cell)
                if progress:
                    progress(c_i, ckpt, weight)
            net.remove()
            for index, row in rows.items():
                table[index].append(row)
    finally:
        if tmp.exists():
            for leftover in tmp.iterdir():
                leftover.unlink()
            tmp.rmdir()
    row_labels = [c.label for c in chosen]
    col_labels = [f"w {w:g}" for w in weights]
    grids = []
    for p in fixed:
        path = out / f"grid_p{p.index:02d}.png"
        atomic_write_bytes(path, compose(table[p.index], row_labels, col_labels, f"{p.prompt}  (seed {p.seed})"))
        grids.append(str(path))
    manifest = {
        "checkpoints": [{"path": str(c.path), "step": c.step, "epoch": c.epoch, "label": c.label} for c in chosen],
        "weights": weights,
        "prompts": [p.to_event() for p in fixed],
        "grids": grids,
        "cells": {str(p.index): [[str(x) for x in row] for row in table[p.index]] for p in fixed},
        "device": dev.type,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    contract.append_event(run_dir, "grid", paths=grids, manifest=str(out / MANIFEST),
                          checkpoints=[c.label for c in chosen], weights=weights,
                          cells=sum(len(r) for rows in table.values() for r in rows))
    return manifest

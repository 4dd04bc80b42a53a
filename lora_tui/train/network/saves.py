"""Saving LoRA files and resumable training state under sd-scripts' names, and pruning old ones.

Names: ``<name>-000002.safetensors`` (epoch 2), ``<name>-step00000500.safetensors`` (step 500),
``<name>.safetensors`` (the end); states ``<name>-000002-state``, ``<name>-step00000500-state``,
``<name>-state``. A state folder is written beside its final name and renamed into place, so a
crash mid-save never leaves a half state that ``--resume`` would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lora_tui.core.errors import TrainError
from lora_tui.train.network.file import load_lora, save_lora

STATE_FILES = ("lora.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "train_state.json")


def ext_of(save_model_as: str | None) -> str:
    return "." + (save_model_as or "safetensors")


def lora_name(output_name: str, ext: str, *, epoch: int | None = None, step: int | None = None) -> str:
    if epoch is not None:
        return f"{output_name}-{epoch:06d}{ext}"
    if step is not None:
        return f"{output_name}-step{step:08d}{ext}"
    return f"{output_name}{ext}"


def state_name(output_name: str, *, epoch: int | None = None, step: int | None = None) -> str:
    return lora_name(output_name, "-state", epoch=epoch, step=step)


def removable_epoch(epoch: int, every: int | None, keep: int | None) -> int | None:
    """The periodic epoch save that falls out of the ``save_last_n_epochs`` window (sd-scripts)."""
    if not keep or not every:
        return None
    old = epoch - every * keep
    return old if old > 0 else None


def removable_step(step: int, every: int | None, keep: int | None) -> int | None:
    """The periodic step save older than ``save_last_n_steps`` steps (sd-scripts' rounding)."""
    if not keep or not every:
        return None
    old = step - keep - 1
    old -= old % every
    return old if old > 0 else None


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


@dataclass
class TrainState:
    """Where a run stands: enough to continue at the same step with the same data order."""

    epoch: int  # 1-based epoch the next batch belongs to
    position: int  # next local batch index within that epoch
    step: int  # optimizer steps done
    seed: int


def save_state(folder: Path, *, network_state: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
               state: TrainState, extra: dict[str, Any] | None = None) -> Path:
    """Write a state folder atomically (temp folder, fsync'd files, rename)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        save_lora(tmp / "lora.safetensors", network_state)
        for name, obj in (("optimizer.pt", optimizer.state_dict()), ("scheduler.pt", scheduler.state_dict()),
                          ("rng.pt", {"torch": torch.get_rng_state(),
                                      "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})):
            with open(tmp / name, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        info = {"current_epoch": state.epoch, "current_step": state.step, "position": state.position,
                "seed": state.seed, **(extra or {})}
        (tmp / "train_state.json").write_text(json.dumps(info, indent=1) + "\n", "utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _load_pt(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError("state file is missing", path=path, hint="resume from a complete -state folder") from None
    except Exception as exc:  # unpickling refusals and corrupt files
        raise TrainError(f"cannot read state file: {str(exc).splitlines()[0]}", path=path) from None


def read_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], dict[str, Any],
                                      TrainState, dict[str, Any]]:
    """Load a state folder: (network weights, optimizer state, scheduler state, rng, position, info)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainError("resume state not found", path=folder, hint="pass a <name>-state folder to --resume")
    missing = [n for n in STATE_FILES if not (folder / n).exists()]
    if missing:
        raise TrainError(f"incomplete state folder (missing {', '.join(missing)})", path=folder)
    weights, _ = load_lora(folder / "lora.safetensors")
    try:
        info = json.loads((folder / "train_state.json").read_text("utf-8"))
        position = TrainState(int(info["current_epoch"]), int(info["position"]), int(info["current_step"]),
                              int(info["seed"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainError(f"train_state.json is unreadable: {exc}", path=folder / "train_state.json") from None
    return (weights, _load_pt(folder / "optimizer.pt"), _load_pt(folder / "scheduler.pt"), _load_pt(folder / "rng.pt"),
            position, info)


def restore_rng(rng: dict[str, Any]) -> None:
    if isinstance(rng.get("torch"), torch.Tensor):
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])

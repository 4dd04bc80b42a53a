"""A run's saved files as the monitor lists them: checkpoints (LoRA and state) and sample images.

The folders are the truth (a file the user deleted is not listed); the run's ``save`` and ``sample``
events add what a name does not say: the step, the kind, each image's prompt.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
STEP_IN_NAME = re.compile(r"[-_](?:step)?0*(\d+)(?:-state)?$")
MAX_LISTED = 200


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    kind: str  # "lora" or "state"
    step: int | None
    size: int
    mtime: float


@dataclass(frozen=True)
class Sample:
    path: Path
    step: int | None
    prompt: str
    mtime: float


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _step_from(name: str) -> int | None:
    match = STEP_IN_NAME.search(name)
    return int(match.group(1)) if match else None


def checkpoints(run_dir: Path, saves: list[dict[str, Any]]) -> list[Checkpoint]:
    """LoRA files in output/ and state folders in state/ or output/, newest first."""
    steps = {str(Path(str(e.get("path"))).name): e.get("step") for e in saves if e.get("path")}
    found: list[Checkpoint] = []
    for folder in (run_dir / "output", run_dir / "state"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_file() and path.suffix in (".safetensors", ".ckpt", ".pt"):
                kind = "lora"
            elif entry.is_dir() and path.name.endswith("-state"):
                kind = "state"
            else:
                continue
            try:
                size, mtime = _size(path), entry.stat().st_mtime
            except OSError:
                continue
            step = steps.get(path.name)
            found.append(Checkpoint(path, kind, step if isinstance(step, int) else _step_from(path.stem),
                                    size, mtime))
    found.sort(key=lambda c: (c.mtime, c.path.name), reverse=True)
    return found[:MAX_LISTED]


def samples(run_dir: Path, events: list[dict[str, Any]]) -> list[Sample]:
    """Images in samples/, newest first, each with the prompt and step its ``sample`` event named."""
    known: dict[str, tuple[int | None, str]] = {}
    for event in events:
        if event.get("kind") != "sample":
            continue
        prompts = event.get("prompts") or []
        for i, raw in enumerate(event.get("paths") or []):
            prompt = prompts[i] if i < len(prompts) else ""
            if isinstance(prompt, dict):
                prompt = prompt.get("prompt", "")
            step = event.get("step")
            known[Path(str(raw)).name] = (step if isinstance(step, int) else None, str(prompt))
    found: list[Sample] = []
    try:
        entries = [e for e in os.scandir(run_dir / "samples") if e.is_file() and
                   e.name.lower().endswith(IMAGE_SUFFIXES)]
    except OSError:
        return []
    for entry in entries:
        step, prompt = known.get(entry.name, (None, ""))
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        found.append(Sample(Path(entry.path), step if step is not None else _step_from(Path(entry.name).stem),
                            prompt, mtime))
    found.sort(key=lambda s: (s.step or 0, s.mtime, s.path.name), reverse=True)
    return found[:MAX_LISTED]


def fmt_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"

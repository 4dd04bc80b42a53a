"""Is this path a base model at all? A cheap answer before a run is created.

Loading a model takes seconds (importing torch alone does); a path that is plainly not a model —
missing, a folder without ``model_index.json`` or ``unet/``, a ``.txt`` file, an empty file — is
answered here from a few ``stat`` calls, so ``lora-tui train`` refuses it in one line without leaving
a failed run folder behind. What the file holds is the trainer's business (``lora-tui doctor`` reads
the header).
"""

from __future__ import annotations

from pathlib import Path

from lora_tui.core.errors import LoraTuiError

# what both trainers load as one file (sd-scripts and lora_tui.train.model.load)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
FIX = "give --model (or [model] pretrained_model_name_or_path) a .safetensors/.ckpt file or a Diffusers folder"


def model_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a base model, or None when it looks like one."""
    try:
        if path.is_dir():
            if (path / "model_index.json").is_file() or (path / "unet").is_dir():
                return None
            return "not a Diffusers model folder (no model_index.json or unet/ in it)"
        if not path.exists():
            return "base model not found"
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            return f"not a model file ({path.suffix or 'no extension'}; expected .safetensors or .ckpt)"
        if path.stat().st_size == 0:
            return "model file is empty (0 bytes)"
    except OSError as exc:
        return f"cannot read the base model: {exc.strerror or exc}"
    return None


def check_model_path(path: Path, *, hint: str = FIX) -> None:
    """Raise a one-line :class:`LoraTuiError` naming ``path`` when it cannot be a base model."""
    problem = model_problem(path)
    if problem:
        raise LoraTuiError(problem, path=path, hint=hint)

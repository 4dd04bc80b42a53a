"""Built-in model references: ``pretrained_model_name_or_path = "lora-tui:tiny-sd15"``.

A reference names a tiny random model that lora-tui builds itself, so a fresh machine can train the
sample project with nothing to download (like a database's embedded default). It is for seeing and
testing the loop, never for a useful LoRA.

This module is the torch-free half: the names, where each model lives in the user's cache
(``$XDG_CACHE_HOME/lora-tui/models/`` or ``~/.cache/lora-tui/models/``), whether it is built, and
:func:`ensure_built`, which asks a torch process (``python -m lora_tui.train.model.builtin NAME``) to
build it. The build itself (``lora_tui.train.model.builtin``) writes into a temporary folder beside
the final one and renames it into place, so concurrent first uses end with one complete model.
Commands that only need the reference to be valid (``check``, ``steps``) never build anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core.errors import ModelError

PREFIX = "lora-tui:"
# Bump when lora_tui.train.model.tiny changes the weights it makes: the folder name carries it, so an
# older build is never reused for a newer recipe (and never overwritten under a running trainer).
BUILD_FORMAT = 1
STAMP = "lora-tui-model.json"  # written last inside the temporary folder: its presence means "complete"
BUILD_TIMEOUT_S = 600
TEST_MODEL_NOTE = "tiny random test model: trains the loop, not a useful LoRA"
TEST_MODEL_FIX = "set [model] pretrained_model_name_or_path to your checkpoint"


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: its name and the arguments of ``make_tiny_model`` that make it."""

    name: str
    family: str  # sd_v1 | sd_v2 (sdxl once the trainer has it)
    seed: int
    description: str

    @property
    def reference(self) -> str:
        return PREFIX + self.name

    @property
    def v2(self) -> bool:
        return self.family == "sd_v2"

    def path(self, env: Mapping[str, str] | None = None) -> Path:
        """The Diffusers folder this model is (or will be) built into."""
        return models_dir(env) / f"{self.name}-v{BUILD_FORMAT}"

    def is_built(self, env: Mapping[str, str] | None = None) -> bool:
        return (self.path(env) / STAMP).is_file()

    def stamp(self) -> dict[str, object]:
        """What the stamp file says (no time or host in it: two builds are the same bytes)."""
        return {"reference": self.reference, "family": self.family, "seed": self.seed, "format": BUILD_FORMAT,
                "note": TEST_MODEL_NOTE}


KNOWN: dict[str, BuiltinModel] = {
    m.name: m for m in (
        BuiltinModel("tiny-sd15", "sd_v1", 0, "tiny random SD1.5-topology model (a few MB)"),
    )
}


def is_reference(raw: object) -> bool:
    """Whether a model value is a ``lora-tui:`` reference rather than a path or a hub id."""
    return isinstance(raw, str) and raw.strip().startswith(PREFIX)


def known_names() -> str:
    return ", ".join(m.reference for m in KNOWN.values())


def find(raw: object) -> BuiltinModel | None:
    """The model a reference (or a bare name) names, or None."""
    if not isinstance(raw, str):
        return None
    name = raw.strip()[len(PREFIX):] if is_reference(raw) else raw.strip()
    return KNOWN.get(name)


def lookup(raw: str, *, path: str | Path | None = None) -> BuiltinModel:
    """The model a reference names; an unknown name is a one-line error listing the known ones
    (``path``: the file the reference was read from, named in the error)."""
    model = find(raw)
    if model is None:
        raise ModelError(f"unknown built-in model '{raw.strip()}'", path=path,
                         hint=f"known: {known_names()}; or give a .safetensors/.ckpt file or a Diffusers folder")
    return model


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/lora-tui/models`` (a relative XDG_CACHE_HOME is ignored, as the XDG spec says),
    else ``~/.cache/lora-tui/models``."""
    env = os.environ if env is None else env
    cache = env.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and os.path.isabs(cache) else Path(os.path.expanduser("~")) / ".cache"
    return base / "lora-tui" / "models"


def resolve(raw: str, env: Mapping[str, str] | None = None) -> Path:
    """The folder a reference stands for, built or not (an unknown name raises ModelError)."""
    return lookup(raw).path(env)


def ensure_built(raw: str, *, python: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The model's folder, built first (in a torch subprocess, a few seconds) if this is its first use.

    For torch-free processes that hand the folder to someone else (the sd-scripts backend, ``lora-tui
    config``); the built-in trainer builds in its own process instead.
    """
    model = lookup(raw)
    if model.is_built(env):
        return model.path(env)
    run_env = dict(os.environ if env is None else env)
    try:
        done = subprocess.run([python or sys.executable, "-m", "lora_tui.train.model.builtin", model.name],
                              env=run_env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"cannot build {model.reference}: {exc}".splitlines()[0], path=model.path(env)) from None
    if done.returncode != 0 or not model.is_built(env):
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit code {done.returncode}"
        raise ModelError(f"cannot build {model.reference}: {why}", path=model.path(env),
                         hint="check that the cache folder is writable and torch is installed")
    return model.path(env)

"""The layer rules of DESIGN.md, checked in a fresh interpreter per layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout))


def core_modules() -> list[str]:
    return sorted("lora_tui.core." + p.stem for p in (ROOT / "lora_tui" / "core").glob("*.py")
                  if p.stem != "__init__")


CLI_MODULES = ["lora_tui.cli", "lora_tui.cli_runs", "lora_tui.cli_train", "lora_tui.cli_captions"]


@pytest.mark.parametrize("module", [*core_modules(), *CLI_MODULES])
def test_core_and_cli_import_no_ui_or_torch(module: str) -> None:
    loaded = modules_after_import(module)
    banned = {"textual", "rich", "torch", "diffusers", "transformers"}
    assert not banned & {m.split(".")[0] for m in loaded}


def test_ui_imports_no_training_stack() -> None:
    loaded = modules_after_import("lora_tui.ui.app")
    assert not {"torch", "diffusers", "transformers", "accelerate", "peft"} & {m.split(".")[0] for m in loaded}


RUN_SCREENS = ["lora_tui.ui.screens.monitor", "lora_tui.ui.screens.train", "lora_tui.ui.screens.runs",
               "lora_tui.ui.launcher", "lora_tui.ui.notify"]


@pytest.mark.parametrize("module", RUN_SCREENS)
def test_run_screens_import_no_training_stack(module: str) -> None:
    """The screens that launch and watch runs stay torch-free: the trainer runs in its own process."""
    loaded = modules_after_import(module)
    assert not {"torch", "diffusers", "transformers", "accelerate", "peft"} & {m.split(".")[0] for m in loaded}


def _modules(layer: str) -> list[str]:
    """Every module of a layer, subpackages included (runs.backends.*)."""
    base = ROOT / "lora_tui" / layer
    return sorted(f"lora_tui.{layer}." + ".".join(p.relative_to(base).with_suffix("").parts)
                  for p in base.rglob("*.py") if p.stem not in ("__init__", "__main__"))


@pytest.mark.parametrize("module", _modules("runs"))
def test_runs_import_no_ui_or_torch(module: str) -> None:
    loaded = {m.split(".")[0] for m in modules_after_import(module)}
    assert not {"textual", "rich", "torch", "diffusers", "transformers"} & loaded


def test_the_trainer_imports_no_textual() -> None:
    loaded = set()
    for module in ("lora_tui.train.loop.train", "lora_tui.train.diagnostics.doctor", "lora_tui.train.loop.sampling"):
        loaded |= {m.split(".")[0] for m in modules_after_import(module)}
    assert "textual" not in loaded and "torch" in loaded

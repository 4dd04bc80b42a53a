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


# every cli*.py, found on disk so a new command module is checked without editing this list
CLI_MODULES = sorted("lora_tui." + p.stem for p in (ROOT / "lora_tui").glob("cli*.py"))


@pytest.mark.parametrize("module", [*core_modules(), *CLI_MODULES])
def test_core_and_cli_import_no_ui_or_torch(module: str) -> None:
    loaded = modules_after_import(module)
    banned = {"textual", "rich", "torch", "diffusers", "transformers"}
    assert not banned & {m.split(".")[0] for m in loaded}


def _modules(layer: str) -> list[str]:
    """Every module of a layer, subpackages included (runs.backends.*, ui.screens.*, train.loop.*)."""
    base = ROOT / "lora_tui" / layer
    return sorted(f"lora_tui.{layer}." + ".".join(p.relative_to(base).with_suffix("").parts)
                  for p in base.rglob("*.py") if p.stem not in ("__init__", "__main__"))


@pytest.mark.parametrize("module", _modules("ui"))
def test_every_ui_module_imports_no_training_stack(module: str) -> None:
    """Each on its own: the screens the app loads lazily (dataset, config, …) are checked too."""
    loaded = modules_after_import(module)
    assert not {"torch", "diffusers", "transformers", "accelerate", "peft"} & {m.split(".")[0] for m in loaded}


def test_the_ui_layer_lists_its_lazily_loaded_screens() -> None:
    assert {"lora_tui.ui.screens.dataset", "lora_tui.ui.screens.config"} <= set(_modules("ui"))


@pytest.mark.parametrize("module", _modules("runs"))
def test_runs_import_no_ui_or_torch(module: str) -> None:
    loaded = {m.split(".")[0] for m in modules_after_import(module)}
    assert not {"textual", "rich", "torch", "diffusers", "transformers"} & loaded


def test_the_trainer_imports_no_textual() -> None:
    """Every train module, in one fresh interpreter (each loads torch: one start-up, not thirty)."""
    modules = _modules("train")
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert len(modules) > 10 and "textual" not in loaded and "rich" not in loaded and "torch" in loaded

"""The train screen's VRAM estimate: the form's values (saved or typed) against the card's free memory.

The numbers and the advice are `lora-tui doctor`'s (core.vram_check.assess), so the screen and the CLI
never disagree. What is here is the form's side: which fields move the estimate, how a typed value
that is not saved yet is applied to a copy of the project (project.with_value: validated, never
written), and the words. Reading the model's header and asking NVML for the free memory are I/O, so
:func:`estimate_for` runs in the screen's worker thread; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text

from lora_tui.core import project, steps
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.core.vram_check import Assessment, assess, vram_family
from lora_tui.ui.screens.config import parse_value

MODEL_KEY = "pretrained_model_name_or_path"
DATASET_KEYS = ("batch_size", "resolution")  # per [[datasets]] entry: the form sets every dataset
PRECISIONS = ("no", "fp16", "bf16")
DIFFERS = "differs per dataset (a value sets every dataset)"


def dataset_targets(proj: Project) -> list[tuple[str | int, ...]]:
    """Where a dataset-level value goes: every [[datasets]] entry, or [general] when there is none."""
    return [("datasets", ds.index) for ds in proj.datasets] or [("general",)]


def shown_dataset_value(proj: Project, key: str) -> str | None:
    """The value every dataset trains with ("512", "768,512"), or None when the datasets differ."""
    values = {_text(ds.get(key)) for ds in proj.datasets} or {_text(proj.general.get(key))}
    return values.pop() if len(values) == 1 else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_dataset_value(key: str, text: str) -> Any:
    """Form text → TOML value: batch_size an int, resolution ``512`` or ``768,512`` (``768x512`` too)."""
    text = text.strip()
    if not text:
        return None
    if key == "resolution":
        return parse_value(key, text)  # the config screen's reading: one number, or width,height
    parts = [p for p in text.lower().replace("x", ",").replace("×", ",").replace(" ", ",").split(",") if p]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if key == "batch_size" and len(numbers) == 1:
        return numbers[0]
    raise LoraTuiError(f"{key}: {text!r} is not a whole number such as 4", hint="type a number, or clear the field")


def with_field(proj: Project, widget_id: str, text: str) -> Project:
    """``proj`` with one form field's text applied (validated like a load, not saved)."""
    if widget_id == "model":
        return project.with_value(proj, ("model",), MODEL_KEY, text.strip() or None)
    if widget_id.startswith("m-"):
        key = widget_id[2:]
        value = parse_dataset_value(key, text)
        for where in dataset_targets(proj):
            proj = project.with_value(proj, where, key, value)
        return proj
    key = widget_id[2:]
    return project.with_value(proj, ("training",), key, parse_value(key, text))


def draft_project(proj: Project, drafts: Mapping[str, str]) -> tuple[Project, str | None]:
    """The project with every typed, unsaved field applied, and the first one that is not valid."""
    for widget_id, text in drafts.items():
        try:
            proj = with_field(proj, widget_id, text)
        except LoraTuiError as exc:
            return proj, str(exc)
    return proj, None


def estimate_for(proj: Project, scans: list[Any] | None, report: Any = None) -> Assessment | None:
    """The doctor's assessment of ``proj`` (reads the model header and NVML: call it off the UI thread).

    ``report`` is the steps report when the caller has one for exactly ``proj``; otherwise the buckets
    are recomputed from ``scans`` (a typed resolution moves them)."""
    if report is None:
        try:
            report = steps.compute(proj, scans)
        except (LoraTuiError, OSError, ValueError):
            report = None  # no sized images: the resolution (or the family's default) stands in
    return assess(proj, vram_family(proj), report)


def render(found: Assessment | None, *, drafted: bool = False, problem: str | None = None,
           error: str | None = None) -> Text:
    """The estimate on a few lines: the figure, what it is for, the verdict against the card, the fix."""
    text = Text()
    if problem:
        text.append(f"not previewed: {problem}\n", style="red")
    if drafted:
        text.append("(with unsaved edits: enter saves a field)\n", style="dim")
    if found is None:
        text.append(f"no estimate: {error}" if error else "estimating…", style="red" if error else "")
        return text
    text.append(f"{found.estimate.text()}{found.scope}\n")
    text.append(f"for {found.basis}; unverified on a GPU\n", style="dim")
    if found.over:
        text.append(f"✗ {found.verdict}: a launch asks first", style="bold red")
    elif found.fix:
        text.append(f"! {found.verdict}", style="yellow")
    else:
        text.append(f"✓ {found.verdict}", style="green")
    if found.fix:
        text.append(f"\n→ {found.fix}", style="red" if found.over else "yellow")
    return text


def question(found: Assessment) -> str:
    """The line the launch's confirmation shows for an estimate over the card's free memory."""
    return f"VRAM: {found.estimate.text()} for {found.basis}; {found.verdict} ({found.fix})"

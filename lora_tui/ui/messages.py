"""Messages workers post back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from lora_tui.core.lint import LintReport
from lora_tui.core.scan import SubsetScan
from lora_tui.core.steps import StepsReport


@dataclass
class ProjectAnalysed(Message):
    """A scan, steps report and lint report, computed off the UI thread."""

    scans: list[SubsetScan]
    steps: StepsReport | None
    lint: LintReport | None
    error: str | None = None

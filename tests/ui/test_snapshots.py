"""SVG snapshots of screens (regenerate with: pytest tests/ui --snapshot-update)."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from tests.ui.settle import settled


def test_overview_of_the_sample_project(snap_compare, sample_copy: Path) -> None:
    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(130, 44), run_before=settled)

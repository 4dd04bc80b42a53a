"""SVG snapshots of screens (regenerate with: pytest tests/ui --snapshot-update)."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from tests.ui.settle import settled


def test_overview_of_the_sample_project(snap_compare, sample_copy: Path) -> None:
    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(130, 44), run_before=settled)


def test_dataset_screen_of_the_sample_project(snap_compare, sample_copy: Path) -> None:
    from lora_tui.ui.screens.dataset import DatasetScreen
    from lora_tui.ui.widgets.dataset.preview import ImagePreview

    async def open_dataset(pilot) -> None:
        await settled(pilot)
        await pilot.press("d")
        for _ in range(300):
            await pilot.pause(0.02)
            screen = pilot.app.screen
            if isinstance(screen, DatasetScreen) and screen.index is not None:
                preview = screen.query_one(ImagePreview)
                if preview.shown is not None and preview.shown == preview.path:
                    break
        await pilot.pause(0.05)

    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(130, 44), run_before=open_dataset)

"""SVG snapshots of screens (regenerate with: pytest tests/ui --snapshot-update)."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from tests.ui.settle import settled, wait_until


def test_overview_of_the_sample_project(snap_compare, sample_copy: Path) -> None:
    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(130, 44), run_before=settled)


def test_dataset_screen_of_the_sample_project(snap_compare, sample_copy: Path) -> None:
    from lora_tui.ui.screens.dataset import DatasetScreen
    from lora_tui.ui.widgets.dataset.preview import ImagePreview

    async def open_dataset(pilot) -> None:
        await settled(pilot)
        await pilot.press("d")

        def preview_shown() -> bool:
            screen = pilot.app.screen
            if not isinstance(screen, DatasetScreen) or screen.index is None or not screen.captions_ready:
                return False  # the list first, then every caption (read in slices), then the picture
            preview = screen.query_one(ImagePreview)
            return preview.shown is not None and preview.shown == preview.path

        await wait_until(pilot, preview_shown, "the preview")
        await pilot.pause(0.05)

    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(130, 44), run_before=open_dataset)

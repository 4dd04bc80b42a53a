"""Opening the dataset screen: what its first frame shows, and the waiting it does not do."""

from __future__ import annotations

import threading
from pathlib import Path

from textual.widgets import Static

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens import dataset_load
from lora_tui.ui.screens.dataset import DatasetScreen
from tests.helpers import write_project
from tests.ui.settle import wait_until


async def test_the_first_frame_shows_the_listing_and_the_first_caption(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = DatasetScreen(app.project)
        await app.push_screen(screen)  # mounted: nothing painted since
        assert screen.index is not None and screen.row is screen.index.rows[0]
        assert screen.editor.title_text.startswith(screen.row.record.name)
        assert screen.image_list.has_focus
        await pilot.press("j")
        await pilot.pause()
        assert screen.row is screen.index.rows[1]


async def test_a_slow_listing_does_not_hold_the_screen_and_arrives_later(sample_copy: Path, monkeypatch) -> None:
    """A folder that takes longer than QUICK_LISTING_S to list (a network disk) opens as before:
    "scanning…" first, the list when it is ready."""
    gate = threading.Event()
    real = dataset_load.scan.scan_project

    def slow_scan(proj, **kw):
        gate.wait(10)
        return real(proj, **kw)

    monkeypatch.setattr(dataset_load.scan, "scan_project", slow_scan)
    monkeypatch.setattr(dataset_load, "QUICK_LISTING_S", 0.01)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = DatasetScreen(app.project)
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.index is None and screen.row is None
        assert "scanning" in str(screen.query_one("#status", Static).render())
        gate.set()
        await wait_until(pilot, lambda: screen.row is not None and screen.editor.title_text.startswith(
            screen.row.record.name), "the list and the first caption")
        assert screen.row is screen.index.rows[0]


async def test_an_empty_folder_opens_to_a_status_line_not_scanning(tmp_path: Path) -> None:
    (tmp_path / "data" / "none").mkdir(parents=True)
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "data/none"}]}])
    app = LoraTuiApp(project.load(tmp_path))
    async with app.run_test(size=(140, 45)):
        screen = DatasetScreen(app.project)
        await app.push_screen(screen)  # the first frame: no "scanning…" left over
        assert screen.index is not None and screen.row is None
        assert str(screen.query_one("#status", Static).render()).startswith("0/0")

"""Keyboard flows on the dataset screen, asserting on the files on disk."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.dataset import DatasetScreen
from lora_tui.ui.widgets.dataset.caption_editor import CaptionEditor
from lora_tui.ui.widgets.dataset.image_list import ImageList


async def _open_dataset(pilot) -> DatasetScreen:
    await pilot.press("d")
    for _ in range(200):
        await pilot.pause()
        screen = pilot.app.screen
        if isinstance(screen, DatasetScreen) and screen.index is not None:
            await pilot.pause()
            return screen
        await pilot.pause(0.02)
    raise AssertionError("dataset screen did not load")


async def test_edit_a_caption_saves_it_atomically_and_undo_survives_a_restart(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    original = caption.read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        screen.query_one(ImageList).cursor = 12  # first armsup image (after 12 mira images)
        await pilot.pause()
        await pilot.press("e")
        screen.editor.move_cursor((0, len(original.rstrip("\n"))))
        await pilot.press("comma", "space", "s", "m", "i", "l", "e", "escape")
        await pilot.pause()
        assert caption.read_text() == original.rstrip("\n") + ", smile\n"
    # a new app session: undo comes from the journal on disk
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _open_dataset(pilot)
        await pilot.press("u")
        await pilot.pause()
        assert caption.read_text() == original


async def test_navigation_saves_the_edit_in_progress(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "mira" / "mira_00.txt"
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        await pilot.press("e", "m", "i", "r", "a", "ctrl+down")
        await pilot.pause()
        assert caption.read_text() == "mira\n"
        assert screen.query_one(ImageList).cursor == 1
        assert screen.query_one(CaptionEditor).text == ""  # mira_01 has no caption file


async def test_untouched_uncaptioned_images_get_no_caption_file(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _open_dataset(pilot)
        await pilot.press("e", "escape", "j", "j", "e", "ctrl+down")
        await pilot.pause()
    assert not list((sample_copy / "data" / "mira").glob("*.txt"))


async def test_review_marks_persist_and_next_unreviewed_skips(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        await pilot.press("r", "j", "f", "x", "k", "n")
        await pilot.pause()
        assert screen.query_one(ImageList).cursor == 1  # mira_01 is flagged/excluded, not reviewed
    marks = json.loads((sample_copy / ".lora-tui" / "review.json").read_text())["images"]
    assert marks == {"data/mira/mira_00.png": ["reviewed"], "data/mira/mira_01.png": ["excluded", "flagged"]}


async def test_review_and_next_from_the_editor(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        await pilot.press("e", "ctrl+r", "ctrl+r")
        await pilot.pause()
        assert screen.query_one(ImageList).cursor == 2
        assert screen.index.progress() == (2, 32)

"""The dataset screen while someone else writes captions: busy, never frozen, never an edit lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Static

from lora_tui.core import project, swap
from lora_tui.core.journal import Change, Journal
from lora_tui.core.writelock import WriteLock
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.dataset import DatasetScreen
from tests.ui.settle import wait_until
from tests.ui.test_dataset_screen import _open_at, _open_dataset, _open_tag_panel_at

OTHER = "lora-tui captions judy add A --yes"


def _status(screen: DatasetScreen) -> str:
    return str(screen.query_one("#status", Static).render())


def _said(app: LoraTuiApp, fragment: str) -> bool:
    return any(fragment in str(n.message) for n in app._notifications)


async def test_an_edit_waits_for_another_writer_without_freezing_and_is_saved_after(
        sample_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.ui.screens import dataset as dataset_screen

    monkeypatch.setattr(dataset_screen, "AUTOSAVE_SECONDS", 0.3)
    caption = sample_copy / "data" / "armsup" / "pose_03.txt"
    original = caption.read_text()
    other = WriteLock(sample_copy / ".lora-tui", command=OTHER)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _open_at(pilot, "pose_03.png")
        with other.hold(0.0):
            await pilot.press("e")
            screen.editor.move_cursor((0, len(original.rstrip("\n"))))
            await pilot.press("comma", "space", "w", "e", "t", "escape")
            await wait_until(pilot, lambda: "not saved yet: captions are being written by" in _status(screen),
                             "the busy state")
            assert OTHER in _status(screen) and _said(app, "your edit is kept")
            await pilot.press("t")  # the screen still answers keys: the tag panel opens
            await wait_until(pilot, lambda: screen.query_one("#tags").display, "the tag panel")
            await pilot.press("t")
            assert caption.read_text() == original  # nothing written while the other writer holds it
        await wait_until(pilot, lambda: caption.read_text() == original.rstrip("\n") + ", wet\n", "the retried save")
        await wait_until(pilot, lambda: "not saved yet" not in _status(screen), "the busy state to clear")


async def test_undo_while_another_writer_holds_the_lock_shows_it_and_then_undoes(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "mira" / "mira_00.txt"
    journal = Journal(sample_copy)
    journal.apply("edit caption mira_00.png", [Change(caption, None, "mira, hat\n")])  # a new caption
    other = WriteLock(sample_copy / ".lora-tui", command=OTHER)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _open_dataset(pilot)
        with other.hold(0.0):
            await pilot.press("u")
            await wait_until(pilot, lambda: "undoing… waiting: captions are being written by" in _status(screen),
                             "the waiting undo")
            await pilot.press("j")  # not frozen
            await wait_until(pilot, lambda: screen.image_list.cursor == 1, "the cursor to move")
            assert caption.read_text() == "mira, hat\n"
        await wait_until(pilot, lambda: not caption.exists(), "the undo")
        await wait_until(pilot, lambda: _said(app, "undid: edit caption mira_00.png (1 files)"), "the notice")
        assert "undoing" not in _status(screen)


async def test_a_caption_saved_elsewhere_after_the_preview_is_left_alone_and_named(sample_copy: Path) -> None:
    from lora_tui.ui.screens.modals import AskText, ConfirmPreview

    captions = sorted((sample_copy / "data" / "armsup").glob("*.txt"))
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await _open_tag_panel_at(pilot, "short hair")
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, AskText)
        app.screen.query_one("#answer").value = ""
        await pilot.press(*"cropped hair", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmPreview)
        theirs = b"short hair, saved in vim while the preview was open\r\n"
        captions[4].write_bytes(theirs)
        await pilot.press("enter")
        await wait_until(pilot, lambda: _said(app, "changed elsewhere was left alone"), "the report")
        assert captions[4].read_bytes() == theirs
        assert _said(app, f"data/armsup/{captions[4].name}")
        assert all("cropped hair" in p.read_text() for p in captions if p != captions[4])


async def test_the_app_finishes_an_interrupted_edit_when_it_starts(sample_copy: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    captions = sorted((sample_copy / "data" / "armsup").glob("*.txt"))
    changes = [Change(p, p.read_text(), p.read_text().rstrip("\n") + ", kept\n") for p in captions]
    real, calls = os.replace, {"n": 0}

    class Killed(BaseException):
        pass

    def dies_at_the_fifth(src, dst):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(swap.os, "replace", dies_at_the_fifth)
    with pytest.raises(Killed):
        Journal(sample_copy).apply("add tag 'kept'", changes)
    monkeypatch.undo()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await wait_until(pilot, lambda: _said(app, "recovered an interrupted edit 'add tag 'kept'': 14 captions"),
                         "the recovery notice")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "OverviewScreen", "the overview")
    assert all(p.read_text().endswith(", kept\n") for p in captions)
    assert Journal(sample_copy).peek_undo().label == "add tag 'kept'"


async def test_an_edit_that_cannot_be_saved_when_quitting_is_kept_and_named_at_the_next_start(
        sample_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.core import lint, unsaved
    from lora_tui.ui.screens import dataset as dataset_screen

    monkeypatch.setattr(dataset_screen, "AUTOSAVE_SECONDS", 60)  # only quitting saves
    monkeypatch.setenv("LORA_TUI_LOCK_WAIT", "0.2")
    caption = sample_copy / "data" / "armsup" / "pose_03.txt"
    original = caption.read_text()
    other = WriteLock(sample_copy / ".lora-tui", command=OTHER)
    app = LoraTuiApp(project.load(sample_copy))
    with other.hold(0.0):  # someone else writes captions for longer than quitting waits
        async with app.run_test(size=(140, 45), notifications=True) as pilot:
            screen = await _open_at(pilot, "pose_03.png")
            await pilot.press("e")
            screen.editor.move_cursor((0, len(original.rstrip("\n"))))
            await pilot.press("comma", "space", "k", "e", "p", "t")
            await pilot.press("ctrl+q")
    assert caption.read_text() == original
    (kept,) = unsaved.stashed(sample_copy)
    assert kept.read_text().rstrip("\n") == original.rstrip("\n") + ", kept" and kept.name.endswith("pose_03.txt")
    assert any(f.code == "unsaved-edits" for f in lint.check_project(project.load(sample_copy)).findings)
    again = LoraTuiApp(project.load(sample_copy))
    async with again.run_test(size=(140, 45), notifications=True) as pilot:
        await wait_until(pilot, lambda: _said(again, "could not be saved when the app last closed"), "the notice")

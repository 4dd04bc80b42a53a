"""After a write or an outside change, the dataset screen re-reads only the files concerned."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import dataset_index, project, scan
from lora_tui.ui.app import LoraTuiApp
from tests.ui.settle import settled, wait_until
from tests.ui.test_dataset_screen import _open_at


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Captions re-read by the index after the screen is open; a full rescan fails the test."""
    seen: list[str] = []
    real = dataset_index.load_caption

    def counting(record) -> None:
        seen.append(record.name)
        real(record)

    monkeypatch.setattr(dataset_index, "load_caption", counting)
    return seen


def _no_full_rescan(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the whole project was scanned again")

    monkeypatch.setattr(scan, "scan_project", refuse)


async def _edited(pilot, screen, caption: Path, words: str) -> None:
    await pilot.press("e")
    screen.editor.move_cursor((0, 0))
    await pilot.press(*words, "escape")
    await wait_until(pilot, lambda: caption.read_text().startswith(words), "the save")


async def test_undo_rereads_only_the_caption_it_changed(sample_copy: Path, reads, monkeypatch) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    original = caption.read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_00.png")
        await wait_until(pilot, lambda: screen.captions_ready, "every caption")
        await _edited(pilot, screen, caption, "xy")
        _no_full_rescan(monkeypatch)
        reads.clear()
        await pilot.press("u")
        await wait_until(pilot, lambda: screen.editor.text == original and not screen.writing, "the undo")
        assert reads == ["pose_00.png"]
        assert screen.row.text == original.strip() and "xy" not in screen.editor.vocabulary.counts


async def test_an_outside_change_rereads_only_that_caption(sample_copy: Path, reads, monkeypatch) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_00.png")
        await wait_until(pilot, lambda: screen.captions_ready, "every caption")
        _no_full_rescan(monkeypatch)
        reads.clear()
        (sample_copy / "data" / "armsup" / "pose_03.txt").write_text("brand new tag\n")
        row = next(r for r in screen.index.rows if r.record.name == "pose_03.png")
        await wait_until(pilot, lambda: row.text == "brand new tag", "the outside change")
        assert reads == ["pose_03.png"]
        assert screen.editor.vocabulary.counts.get("brand new tag") == 1


async def test_an_outside_write_right_after_our_save_is_not_taken_for_ours(sample_copy: Path) -> None:
    """Own writes are known by content: a different text on disk a moment later is someone else's."""
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_00.png")
        await _edited(pilot, screen, caption, "xy")
        caption.write_text("a captioner's words\n")  # well within the old 2 s "own write" window
        await wait_until(pilot, lambda: screen.editor.text == "a captioner's words\n", "their caption")


async def test_a_bom_and_crlf_caption_left_alone_on_disk_is_not_a_conflict(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    data = "\ufeffarmsup pose, smile\r\nsecond line\r\n".encode()
    caption.write_bytes(data)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_00.png")
        await pilot.press("e", "end", "x")  # an edit in progress
        caption.write_bytes(data)  # a sync tool rewrites the same bytes
        await pilot.pause(1.0)
        assert screen.conflict_key is None
        assert not any("changed outside" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        await wait_until(pilot, lambda: caption.read_bytes().startswith(b"armsup pose, smilex\r\n"), "the save")


def test_own_writes_are_known_by_content_not_by_time(tmp_path: Path) -> None:
    from lora_tui.ui.screens.dataset_watch import OutsideChanges

    watch = OutsideChanges(host=None)
    path = tmp_path / "a.txt"
    path.write_text("ours\n")
    watch.expect_text(path, "ours\n")
    assert watch.is_own_write(path)
    path.write_text("theirs\n")  # a moment later, someone else's text
    assert not watch.is_own_write(path)


async def test_the_image_list_takes_its_colours_from_the_theme(sample_copy: Path) -> None:
    from lora_tui.ui.settings import Settings
    from lora_tui.ui.widgets.dataset.image_list import ImageList

    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-dark"))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_00.png")
        image_list = screen.query_one(ImageList)

        def colour() -> str:
            return image_list.get_component_rich_style("image-list--state-ok", partial=True).color.triplet.hex

        assert colour() == app.get_theme("lora-dark").success.lower()
        app.theme = "lora-light"
        await pilot.pause(0.1)
        assert colour() == app.get_theme("lora-light").success.lower()


async def test_the_overview_takes_the_dataset_screens_scans_instead_of_rescanning(sample_copy: Path,
                                                                                   monkeypatch) -> None:
    from lora_tui.ui.screens.overview import OverviewScreen

    caption = sample_copy / "data" / "armsup" / "pose_05.txt"
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_at(pilot, "pose_05.png")
        await wait_until(pilot, lambda: screen.captions_ready, "every caption")
        before = str(app.screen_stack[-2].title)
        caption.write_text("")  # an empty caption: a lint error, noticed by the watcher
        await wait_until(pilot, lambda: screen.row is not None and screen.row.caption_state == "empty", "the change")
        _no_full_rescan(monkeypatch)
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen) and app.screen.title != before
                         and "errors" in app.screen.title, "the overview's new findings")
        errors_before = int(before.split(" errors")[0].rsplit(" ", 1)[-1])
        assert f"{errors_before + 1} errors" in app.screen.title  # the empty caption's

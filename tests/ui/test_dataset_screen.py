"""Keyboard flows on the dataset screen, asserting on the files on disk."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.dataset import DatasetScreen
from lora_tui.ui.widgets.dataset.caption_editor import CaptionEditor
from lora_tui.ui.widgets.dataset.image_list import ImageList
from tests.ui.settle import wait_until


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


async def _open_tag_panel_at(pilot, tag: str) -> DatasetScreen:
    """The dataset screen with the tag panel open and its cursor on ``tag``."""
    from lora_tui.ui.widgets.dataset.tag_panel import TagPanel

    screen = await _open_dataset(pilot)
    await pilot.press("t")
    await pilot.pause()
    panel = screen.query_one(TagPanel)
    panel.move_cursor(row=[str(panel.get_row_at(i)[1]) for i in range(panel.row_count)].index(tag))
    return screen


async def _open_at(pilot, name: str) -> DatasetScreen:
    """The dataset screen with the cursor on image ``name``."""
    screen = await _open_dataset(pilot)
    image_list = screen.query_one(ImageList)
    image_list.cursor = [r.record.name for r in image_list.rows].index(name)
    await wait_until(pilot, lambda: screen.row is not None and screen.row.record.name == name
                     and (screen.editor.border_title or "").startswith(name), f"{name} in the editor")
    return screen


async def test_edit_a_caption_saves_it_atomically_and_undo_survives_a_restart(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    original = caption.read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_at(pilot, "pose_00.png")
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
        await wait_until(pilot, lambda: caption.read_text() == original, "the undo")


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


async def test_rename_a_tag_everywhere_with_a_preview_then_undo_after_restart(sample_copy: Path) -> None:
    from lora_tui.ui.screens.modals import AskText, ConfirmPreview

    captions = sorted((sample_copy / "data" / "armsup").glob("*.txt"))
    before = [p.read_text() for p in captions]
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _open_tag_panel_at(pilot, "short hair")
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, AskText)
        app.screen.query_one("#answer").value = ""
        await pilot.press(*"cropped hair", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmPreview)
        assert "14 caption files change" in str(app.screen.preview.render())
        assert [p.read_text() for p in captions] == before  # nothing written before confirming
        await pilot.press("enter")
        await wait_until(pilot, lambda: all("cropped hair" in p.read_text() and "short hair" not in p.read_text()
                                            for p in captions), "the rename")
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _open_dataset(pilot)
        await pilot.press("u")
        await wait_until(pilot, lambda: [p.read_text() for p in captions] == before, "the undo")


async def test_picking_a_tag_filters_the_list_and_escape_clears_it(sample_copy: Path) -> None:

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_tag_panel_at(pilot, "woman")
        await pilot.press("enter")
        await pilot.pause()
        assert len(screen.image_list.rows) == 6
        await pilot.press("escape", "escape")  # leave the panel, then clear the filter
        await pilot.pause()
        assert len(screen.image_list.rows) == 32


async def test_subset_filter_and_review_a_whole_subset_with_the_keyboard(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        await pilot.press("s", "s")  # subset 0.1 (armsup)
        await pilot.pause()
        assert {r.subset.name for r in screen.image_list.rows} == {"armsup"}
        await pilot.press("e", *(["ctrl+r"] * 14))
        await pilot.pause()
        assert screen.index.progress() == (14, 14)


_until = wait_until


async def test_an_outside_edit_shows_up_without_restarting(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        screen.image_list.cursor = 12
        await _until(pilot, lambda: screen.row is not None and screen.row.record.name == "pose_00.png", "pose_00")
        (sample_copy / "data" / "armsup" / "pose_00.txt").write_text("written by a captioner\n")
        await _until(pilot, lambda: screen.editor.text == "written by a captioner\n", "the new caption")
        (sample_copy / "data" / "armsup" / "extra.png").write_bytes((sample_copy / "data" / "armsup" /
                                                                    "pose_01.png").read_bytes())
        await _until(pilot, lambda: len(screen.image_list.rows) == 33, "the new image")


async def test_a_conflicting_outside_edit_is_never_overwritten_silently(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_00.txt"
    app = LoraTuiApp(project.load(sample_copy), )
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        screen.image_list.cursor = 12
        await _until(pilot, lambda: screen.row is not None and screen.row.record.name == "pose_00.png", "pose_00")
        await pilot.press("e")
        screen.editor.load_text("my own words\n")  # typing, as far as the editor knows
        caption.write_text("their words\n")
        await _until(pilot, lambda: screen.conflict_key is not None, "the conflict")
        await pilot.press("ctrl+down")  # autosave and navigation must not overwrite theirs
        await pilot.pause(1.8)
        assert caption.read_text() == "their words\n"
        assert screen.editor.text == "my own words\n" and screen.image_list.cursor == 12
        await _until(pilot, lambda: screen.row is not None and not screen.workers, "the refresh to settle")
        await pilot.press("ctrl+o")  # keep mine, explicitly
        await _until(pilot, lambda: caption.read_text() == "my own words\n", "my text to be saved")
        await pilot.press("escape", "u")  # and it is undoable back to theirs
        await _until(pilot, lambda: caption.read_text() == "their words\n", "undo")


async def test_enter_on_a_lint_finding_opens_its_image(sample_copy: Path) -> None:
    from lora_tui.ui.widgets.project.findings import FindingsTable
    from tests.ui.settle import settled

    (sample_copy / "data" / "armsup" / "pose_05.txt").write_text("")  # an empty caption: a lint error
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        table = app.screen.query_one(FindingsTable)
        index = next(i for i, f in enumerate(table.findings) if f.code == "caption-empty")
        table.focus()
        table.move_cursor(row=index)
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.index is not None,
                     "the dataset screen")
        screen = app.screen
        await pilot.pause()
        assert {r.subset.name for r in screen.image_list.rows} == {"armsup"}


async def test_typing_a_tag_suggests_the_datasets_tag_and_tab_takes_it(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_at(pilot, "pose_00.png")
        await pilot.press("e")
        editor = screen.query_one(CaptionEditor)
        line = editor.document.get_line(0)
        editor.cursor_location = (0, len(line))  # the end of the tags (the editor soft-wraps)
        before = editor.text
        await pilot.press("comma", "space", "g", "r")
        assert editor.suggestion == "een background"  # "grey background" is in this caption already
        await pilot.press("tab")
        assert editor.text == before.replace(line, line + ", green background") and editor.has_focus
        await pilot.press("escape")
        await pilot.pause()
    assert (sample_copy / "data" / "armsup" / "pose_00.txt").read_text().rstrip("\n").endswith(", green background")


async def test_chips_edit_a_caption_by_whole_tags_and_save_it(sample_copy: Path) -> None:
    caption = sample_copy / "data" / "armsup" / "pose_01.txt"
    tags = [t.strip() for t in caption.read_text().split(",")]
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_at(pilot, "pose_01.png")
        await pilot.press("c")
        chips = screen.chips
        assert chips.has_focus and chips.tags == tags
        await pilot.press("right", "L")  # move the second tag one place right
        await pilot.press("home", "d")  # delete the first tag
        await pilot.press("a")
        await pilot.pause()
        await pilot.press(*"blue sky", "enter")  # the add dialog
        await pilot.pause()
        await pilot.press("ctrl+down")  # next image saves
        await pilot.pause()
    expected = [tags[2], "blue sky", tags[1], *tags[3:]]
    assert [t.strip() for t in caption.read_text().split(",")] == expected


async def test_file_names_and_tags_with_brackets_are_never_parsed_as_markup(sample_copy: Path) -> None:
    import shutil

    folder = sample_copy / "data" / "armsup"
    shutil.copy(folder / "pose_00.png", folder / "pose[bold].png")  # as markup: shown as "pose.png"
    (folder / "pose[bold].txt").write_text("armsup pose, [bold]x[/bold], a]b\n")
    toml = sample_copy / "lora-tui.toml"  # the title of an uncaptioned image quotes class_tokens
    toml.write_text(toml.read_text().replace('class_tokens = "mira woman"', 'class_tokens = "mira [/i] woman"'))
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_at(pilot, "mira_01.png")  # "[/i]" as markup raised MarkupError here
        assert "'mira [/i] woman'" in screen.editor._border_title.plain
        screen.image_list.cursor = [r.record.name for r in screen.image_list.rows].index("pose[bold].png")
        await pilot.pause()
        assert screen.editor._border_title.plain == "pose[bold].png"
        await pilot.press("c")
        await pilot.pause()
        assert screen.chips.tags == ["armsup pose", "[bold]x[/bold]", "a]b"]
        assert screen.chips._border_title.plain == "pose[bold].png"
        assert "[bold]x[/bold]" in screen.chips.render().plain


async def test_autosave_waits_for_a_pause_in_typing_so_undo_takes_back_the_whole_edit(
        sample_copy: Path, monkeypatch) -> None:
    from lora_tui.ui.screens import dataset as dataset_screen

    monkeypatch.setattr(dataset_screen, "AUTOSAVE_SECONDS", 0.3)
    caption = sample_copy / "data" / "armsup" / "pose_02.txt"
    original = caption.read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_at(pilot, "pose_02.png")
        await pilot.press("e")
        screen.editor.move_cursor((0, len(original.rstrip("\n"))))
        for key in ("comma", "space", "s", "m", "i", "l", "e"):
            await pilot.press(key)
            await pilot.pause(0.12)  # typing: faster than the autosave pause
            assert caption.read_text() == original
        await wait_until(pilot, lambda: caption.read_text() != original, "the autosave after the pause")
        assert caption.read_text() == original.rstrip("\n") + ", smile\n"
        await pilot.press("escape", "u")
        await wait_until(pilot, lambda: not screen.writing and not screen.workers, "the undo")
        assert caption.read_text() == original  # one undo step: the whole word


async def test_a_mark_key_while_another_process_holds_the_marks_says_so_and_changes_nothing(
        sample_copy: Path, monkeypatch) -> None:
    from lora_tui.core.writelock import WriteLock
    from lora_tui.ui.screens import dataset

    monkeypatch.setattr(dataset, "MARK_WAIT_S", 0.05)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_dataset(pilot)
        other = WriteLock(sample_copy / ".lora-tui", "lora-tui caption judy", name="review.lock")
        with other.hold(0):
            await pilot.press("r")
            await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert any("review marks are being written by `lora-tui caption judy`" in m for m in messages)
        assert not screen.marks.has(screen.row.key, "reviewed")
        await pilot.press("r")  # free again: the key works
        await pilot.pause()
        assert screen.marks.has(screen.row.key, "reviewed")


async def test_the_first_image_with_a_caption_file_in_a_class_tokens_subset_is_not_called_uncaptioned(
        sample_copy: Path) -> None:
    """The list shows before captions are read; the first image's title must not say "no caption file"
    just because its text was read a moment after the title was made."""
    folder = sample_copy / "data" / "mira"
    for image in folder.glob("*.png"):
        image.with_suffix(".txt").write_text("mira, red theme\n")
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open_dataset(pilot)  # its first row is the current one from the start
        assert screen.row is not None and screen.row.record.name == "mira_00.png"
        assert screen.editor._border_title.plain == "mira_00.png"
        assert screen.editor.text == "mira, red theme\n"

"""The app on the sample project, driven with Pilot."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.overview import OverviewScreen
from tests.ui.settle import settled


async def _settled(pilot, app: LoraTuiApp) -> None:
    await settled(pilot)


async def test_overview_shows_subsets_steps_and_findings(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _settled(pilot, app)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        assert screen.query_one("#subsets", DataTable).row_count == 3
        steps_text = str(screen.query_one("#steps", Static).render())
        assert "232 steps/epoch" in steps_text
        assert screen.query_one("#findings", DataTable).row_count >= 1
        assert "1 errors" in screen.title


async def test_write_configs_key(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test() as pilot:
        await _settled(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        assert (sample_copy / "configs" / "sample.toml").is_file()
        assert (sample_copy / "configs" / "sample-args.toml").is_file()


async def test_captions_with_brackets_are_not_markup(sample_copy: Path) -> None:
    (sample_copy / "data" / "mira").rename(sample_copy / "data" / "[bold]mira[b]")
    text = (sample_copy / "lora-tui.toml").read_text().replace('"data/mira"', '"data/[bold]mira[b]"')
    (sample_copy / "lora-tui.toml").write_text(text.replace('name = "mira"', 'name = "[red]x[/red]"'))
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _settled(pilot, app)
        table = app.screen.query_one("#subsets", DataTable)
        row = table.get_row_at(0)
        assert str(row[1]) == "[red]x[/red]" and str(row[10]) == "data/[bold]mira[b]"


def test_themes_load_from_data_files() -> None:
    from lora_tui.ui.themes import builtin_theme_dir, load_themes

    loaded = load_themes([builtin_theme_dir()])
    assert {t.name for t in loaded.themes} >= {"lora-dark", "lora-light"} and not loaded.problems


def test_a_broken_theme_file_is_reported_not_fatal(tmp_path: Path) -> None:
    from lora_tui.ui.themes import load_themes

    (tmp_path / "bad.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    (tmp_path / "good.toml").write_text('name = "good"\nprimary = "#ff0000"\n')
    loaded = load_themes([tmp_path])
    assert [t.name for t in loaded.themes] == ["good"]
    assert "not a colour" in loaded.problems[0]


async def test_keymap_overrides_rebind_by_id(sample_copy: Path) -> None:
    from lora_tui.ui.settings import Settings

    app = LoraTuiApp(project.load(sample_copy), Settings(keymap={"project.write_configs": "w"}))
    async with app.run_test() as pilot:
        await _settled(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        assert not (sample_copy / "configs" / "sample.toml").exists()
        await pilot.press("w")
        await pilot.pause()
        assert (sample_copy / "configs" / "sample.toml").exists()


def test_keymap_file_problems_are_reported(tmp_path: Path) -> None:
    from lora_tui.ui.settings import load_keymap

    (tmp_path / "keymap.toml").write_text("[keys]\n'dataset.next' = 3\n")
    keys, problems = load_keymap(tmp_path / "keymap.toml")
    assert keys == {} and "binding ids" in problems[0]


async def test_theme_option_and_the_16_colour_theme(sample_copy: Path) -> None:
    from lora_tui.ui.settings import Settings

    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-ansi"))
    async with app.run_test() as pilot:
        await _settled(pilot, app)
        assert app.theme == "lora-ansi"


def test_unknown_theme_is_a_one_line_error(sample_copy: Path) -> None:
    import pytest

    from lora_tui.core.errors import LoraTuiError
    from lora_tui.ui.app import run_app

    with pytest.raises(LoraTuiError, match="unknown theme 'nope'"):
        run_app(project.load(sample_copy), theme="nope")


async def test_f1_shows_the_screen_help(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _settled(pilot, app)
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query("HelpPanel")


async def test_sighup_exits_cleanly_and_saves_the_caption_being_edited(sample_copy: Path) -> None:
    import os
    import signal

    from tests.ui.test_dataset_screen import _open_dataset

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _open_dataset(pilot)
        await pilot.press("e", "h", "i")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await pilot.pause(0.02)
            if app._exit_renderables is not None or not app.is_running:
                break
    assert (sample_copy / "data" / "mira" / "mira_00.txt").read_text() == "hi\n"


async def test_palette_offers_the_commands_of_the_screen_on_top(sample_copy: Path) -> None:
    from lora_tui.ui.commands import CaptionCommands, ProjectCommands
    from tests.ui.test_dataset_screen import _open_dataset

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await _settled(pilot, app)
        titles = [t for t, _ in ProjectCommands(app.screen)._available()]
        assert "project: Write configs for sd-scripts" in titles
        assert CaptionCommands(app.screen)._available() == []  # not on the overview
        await _open_dataset(pilot)
        assert "captions: Find and replace" in [t for t, _ in CaptionCommands(app.screen)._available()]


async def test_a_theme_picked_in_the_palette_is_the_next_starts_theme(sample_copy: Path) -> None:
    from textual.command import CommandPalette

    from lora_tui.ui.settings import Settings, load_saved_theme
    from tests.ui.settle import wait_until

    app = LoraTuiApp(project.load(sample_copy), Settings(remember_theme=True))
    async with app.run_test(size=(140, 45)) as pilot:
        await _settled(pilot, app)
        assert app.theme == "lora-dark"
        await pilot.press("ctrl+p", *"theme")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette)
                         and app.screen.query_one("CommandList").option_count > 0, "the palette")
        await pilot.press("down", "enter")  # "Theme": the theme picker
        await pilot.pause(0.2)
        await pilot.press(*"lora-light")
        await wait_until(pilot, lambda: app.screen.query_one("CommandList").option_count == 1, "the theme")
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.theme == "lora-light", "the theme to change")
    saved, problems = load_saved_theme()
    assert saved == "lora-light" and not problems
    again = LoraTuiApp(project.load(sample_copy), Settings(saved_theme=saved))
    async with again.run_test() as pilot:
        assert again.theme == "lora-light"

"""The config screen: edits go to lora-tui.toml (validated, comments kept) and the steps follow."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.config import ConfigScreen
from tests.ui.settle import settled, wait_until


def _steps_text(screen: ConfigScreen) -> str:
    return str(screen.query_one("#steps", Static).render())


async def _open_config(pilot) -> ConfigScreen:
    await settled(pilot)
    await pilot.press("p")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfigScreen)
                     and "steps/epoch" in _steps_text(pilot.app.screen), "the config screen")
    return pilot.app.screen


async def _wait_for(pilot, screen: ConfigScreen, text: str) -> str:
    await wait_until(pilot, lambda: text in _steps_text(screen), repr(text))
    return _steps_text(screen)


async def test_changing_repeats_updates_the_file_and_the_steps(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await _open_config(pilot)
        assert "232 steps/epoch" in str(screen.query_one("#steps", Static).render())
        field = screen.query_one("#f-datasets-0-subsets-0-num_repeats", Input)
        field.focus()
        field.value = ""
        await pilot.press("5", "enter")
        shown = await _wait_for(pilot, screen, "173 steps/epoch")
        assert "12 images ×   5 repeats = 60" in shown
        text = (sample_copy / "lora-tui.toml").read_text()
        assert "num_repeats = 5" in text and "# A character" in text  # comments survive
        await pilot.press("escape")
        await settled(pilot)
        assert "173 steps/epoch" in str(app.screen.query_one("#steps", Static).render())


async def test_an_invalid_value_is_refused_and_the_file_untouched(sample_copy: Path) -> None:
    before = (sample_copy / "lora-tui.toml").read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50), notifications=True) as pilot:
        screen = await _open_config(pilot)
        field = screen.query_one("#f-datasets-0-batch_size", Input)
        field.focus()
        field.value = ""
        await pilot.press("0", "enter")
        await pilot.pause()
        assert any("at least 1" in str(n.message) for n in app._notifications)
    assert (sample_copy / "lora-tui.toml").read_text() == before


async def test_the_steps_follow_typing_before_enter_and_nothing_is_saved(sample_copy: Path) -> None:
    before = (sample_copy / "lora-tui.toml").read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await _open_config(pilot)
        field = screen.query_one("#f-datasets-0-subsets-0-num_repeats", Input)
        field.focus()
        field.value = ""
        await pilot.press("5")  # no enter
        shown = await _wait_for(pilot, screen, "173 steps/epoch")
        assert "unsaved" in shown
    assert (sample_copy / "lora-tui.toml").read_text() == before


async def test_escape_with_an_unsaved_field_asks_and_can_save_it(sample_copy: Path) -> None:
    from lora_tui.ui.screens.modals import AskUnsaved
    from lora_tui.ui.screens.overview import OverviewScreen

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await _open_config(pilot)
        field = screen.query_one("#f-datasets-0-subsets-0-num_repeats", Input)
        field.focus()
        field.value = ""
        await pilot.press("5", "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, AskUnsaved), "the question")
        await pilot.press("escape")  # stay
        await wait_until(pilot, lambda: app.screen is screen, "back on the form")
        assert field.value == "5"
        await pilot.press("escape", "s")  # ask again, then save
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), "the overview")
        assert "num_repeats = 5" in (sample_copy / "lora-tui.toml").read_text()
        await wait_until(pilot, lambda: "173 steps/epoch" in str(app.screen.query_one("#steps", Static).render()),
                         "the overview showing the saved project")


async def test_the_config_screen_hands_back_what_it_saved_by_dismissing(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    results: list = []
    async with app.run_test(size=(150, 50)) as pilot:
        await settled(pilot)
        original = app.project
        await app.push_screen(ConfigScreen(original), callback=results.append)
        screen = app.screen
        field = screen.query_one("#f-datasets-0-batch_size", Input)
        field.focus()
        field.value = ""
        await pilot.press("2", "enter")
        await pilot.pause()
        assert app.project is original  # the screen does not write to the app
        await pilot.press("escape")
        await wait_until(pilot, lambda: results, "the result")
    assert results[0].datasets[0].values["batch_size"] == 2


async def test_the_launch_command_is_the_projects_backends(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))  # sample_project trains with the built-in trainer
    async with app.run_test(size=(150, 50)) as pilot:
        screen = await _open_config(pilot)
        await wait_until(pilot, lambda: "launch" in str(screen.query_one("#command", Static).render()), "command")
        shown = str(screen.query_one("#command", Static).render())
        assert "launch (builtin)" in shown and "-m lora_tui.train" in shown
        assert "train_network.py" not in shown


async def test_a_project_without_mixed_precision_opens_the_config_screen_and_can_set_it(sample_copy: Path) -> None:
    """An unset choice is a blank Select (Textual 8's Select.BLANK is False, an illegal value)."""
    from textual.widgets import Select

    toml = sample_copy / "lora-tui.toml"
    text = toml.read_text()
    toml.write_text("\n".join(line for line in text.splitlines() if not line.startswith("mixed_precision")) + "\n")
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_config(pilot)
        select = next(s for s in screen.query(Select) if s.id and s.id.endswith("mixed_precision"))
        assert select.is_blank()
        select.value = "bf16"
        await wait_until(pilot, lambda: 'mixed_precision = "bf16"' in toml.read_text(), "bf16 saved")
        select.clear()
        await wait_until(pilot, lambda: "mixed_precision" not in toml.read_text(), "mixed_precision removed")


async def test_a_width_height_resolution_typed_on_the_config_screen_is_saved_as_a_pair(sample_copy: Path) -> None:
    """The field shows a [w, h] resolution as "384, 256"; typing one (or pressing enter on it) saves the pair,
    where it used to be refused as "expected an integer or [width, height]"."""
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50), notifications=True) as pilot:
        screen = await _open_config(pilot)
        field = screen.query_one("#f-datasets-0-resolution", Input)
        field.focus()
        await pilot.press("end", "ctrl+u", *"384,256", "enter")
        await wait_until(pilot, lambda: project.load(sample_copy).datasets[0].values["resolution"] == [384, 256],
                         "the pair saved")
        assert field.value == "384,256"
        await pilot.press("end", "ctrl+u", *"320x320", "enter")
        await wait_until(pilot, lambda: project.load(sample_copy).datasets[0].values["resolution"] == 320,
                         "a square one saved as one number")


async def test_a_learning_rate_of_nan_or_inf_is_refused(sample_copy: Path) -> None:
    before = (sample_copy / "lora-tui.toml").read_text()
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50), notifications=True) as pilot:
        screen = await _open_config(pilot)
        screen.query_one("#f-training-learning_rate", Input).focus()
        for typed in ("nan", "inf"):
            await pilot.press("end", "ctrl+u", *typed, "enter")
            await pilot.pause()
            assert any(f"'{typed}' is not a number" in str(n.message) for n in app._notifications)
    assert (sample_copy / "lora-tui.toml").read_text() == before

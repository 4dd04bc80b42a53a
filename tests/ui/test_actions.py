"""User actions are declared once: keys, F1 help and the command palette all come from that table."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import Static

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from tests.ui.settle import palette_run, settled, wait_until


def _steps(app: LoraTuiApp) -> str:
    return str(app.screen.query_one("#steps", Static).render())


async def test_the_palette_runs_the_rescan_of_the_screen_it_was_opened_over(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        assert "232 steps/epoch" in _steps(app)
        mira = sample_copy / "data" / "mira"
        for i in range(4):  # four more images in a subset: the steps change once rescanned
            shutil.copy(mira / "mira_00.png", mira / f"extra_{i}.png")
        await palette_run(pilot, "rescan")
        await wait_until(pilot, lambda: "steps/epoch" in _steps(app) and "232 steps/epoch" not in _steps(app),
                         "the rescan's new steps")


async def test_the_palette_lists_the_dataset_actions_that_apply_now(sample_copy: Path) -> None:
    from lora_tui.ui.actions import ScreenActionsProvider
    from tests.ui.test_dataset_screen import _open_dataset

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_dataset(pilot)
        titles = [t for t, _ in ScreenActionsProvider(screen)._available()]
        assert "dataset: Mark reviewed" in titles and "captions: Find and replace" in titles
        assert not any("Keep my caption" in t for t in titles)  # only in a conflict
        assert "dataset: Clear the filter" not in titles  # nothing filtered
        await palette_run(pilot, "next review-state")
        await wait_until(pilot, lambda: screen.index.filter.state == "unreviewed", "the state filter")


async def test_remapped_keys_show_in_the_help(sample_copy: Path) -> None:
    from lora_tui.ui.settings import Settings

    app = LoraTuiApp(project.load(sample_copy), Settings(keymap={"project.rescan": "ctrl+r"}))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        assert "- **ctrl+r** Rescan images and captions" in app.screen.HELP
        assert "- **c** Write configs for sd-scripts" in app.screen.HELP


def test_every_action_id_is_unique_across_the_app() -> None:
    import lora_tui.ui.screens.config
    import lora_tui.ui.screens.dataset  # noqa: F401
    from lora_tui.ui.actions import REGISTRY

    ids = [a.id for table in REGISTRY.values() for a in table]
    assert len(ids) == len(set(ids)) and {"project.rescan", "dataset.undo", "config.write"} <= set(ids)


async def test_f1_on_the_dataset_screen_lists_its_actions_and_the_list_keys(sample_copy: Path) -> None:
    from textual.widgets import Markdown

    from tests.ui.test_dataset_screen import _open_dataset

    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = await _open_dataset(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: screen.query("HelpPanel"), "the help")
        help_text = screen.HELP
        assert "- **R** Rename a tag in the captions shown" in help_text
        assert "- **down / j** Next" in help_text and "## Tag chips" in help_text
        assert "(command palette)" in help_text  # "Clear the filter" has no key of its own
        assert screen.query(Markdown)

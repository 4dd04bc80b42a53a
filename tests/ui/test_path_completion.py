"""The base model field completes paths (→ takes the rest), as a shell does, on the config and train screens."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.train import TrainScreen
from lora_tui.ui.widgets.path_suggester import PathSuggester, model_suggester
from tests.ui.settle import settled, wait_until


def _suggest(suggester: PathSuggester, value: str) -> str | None:
    return asyncio.run(suggester.get_suggestion(value))


def test_folders_and_model_files_are_offered_hidden_and_other_files_not(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "judy.safetensors").write_bytes(b"")
    (tmp_path / "models" / "judy.txt").write_text("")
    (tmp_path / "models" / ".jxxx.safetensors").write_bytes(b"")
    suggester = model_suggester(tmp_path)
    assert _suggest(suggester, "mo") == "models/"
    assert _suggest(suggester, "models/j") == "models/judy.safetensors"
    assert _suggest(suggester, str(tmp_path / "models") + "/ju") == str(tmp_path / "models" / "judy.safetensors")
    assert _suggest(suggester, "models/x") is None
    assert _suggest(suggester, "lora-tui:t") == "lora-tui:tiny-sd15"


def test_a_home_path_keeps_its_tilde(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    assert _suggest(PathSuggester(tmp_path / "elsewhere"), "~/che") == "~/checkpoints/"


async def test_the_config_screen_completes_and_saves_the_base_model(sample_copy: Path) -> None:
    (sample_copy / "models").mkdir()
    (sample_copy / "models" / "mine.safetensors").write_bytes(b"")
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(150, 50)) as pilot:
        await settled(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: bool(app.screen.query("#f-model-pretrained_model_name_or_path")), "config")
        field = app.screen.query_one("#f-model-pretrained_model_name_or_path", Input)
        field.focus()
        field.value = ""
        await pilot.press(*"mod")
        await wait_until(pilot, lambda: field._suggestion == "models/", "the folder offered")
        await pilot.press("right", *"mi")
        await wait_until(pilot, lambda: field._suggestion == "models/mine.safetensors", "the file offered")
        await pilot.press("right", "enter")
        await wait_until(pilot, lambda: 'pretrained_model_name_or_path = "models/mine.safetensors"'
                         in (sample_copy / "lora-tui.toml").read_text(), "the saved model")


async def test_the_train_screen_offers_the_built_in_model(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        await settled(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), "the train screen")
        field = app.screen.query_one("#model", Input)
        field.focus()
        field.value = ""
        await pilot.press(*"lora")
        await wait_until(pilot, lambda: field._suggestion == "lora-tui:tiny-sd15", "the built-in model offered")
        await pilot.press("right")
        assert field.value == "lora-tui:tiny-sd15"

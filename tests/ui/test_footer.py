"""The key footer: its keys from the first frame, rebuilt only when they change."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.widgets.footer import Footer


def _keys(app) -> list[FooterKey]:
    return list(app.screen.query(FooterKey))


async def test_the_overview_footer_has_its_keys_when_mounted_and_keeps_them_as_focus_moves(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(130, 44)) as pilot:
        keys = _keys(app)
        assert [k.description for k in keys][:3] == ["Rescan", "Write configs", "Dataset"]
        await pilot.press("tab")
        await pilot.press("tab")
        await pilot.pause()
        assert _keys(app) == keys  # the same widgets: focus moved, the keys did not change


class _Toggle(App):
    BINDINGS = [Binding("f2", "toggle", "Toggle"), Binding("f3", "save", "Save")]
    can_save = True

    def compose(self) -> ComposeResult:
        yield Input()
        yield Footer()

    def check_action(self, action: str, parameters) -> bool | None:
        return None if action == "save" and not self.can_save else True  # None: shown, disabled

    def action_toggle(self) -> None:
        self.can_save = not self.can_save
        self.refresh_bindings()


async def test_a_key_that_becomes_unavailable_is_shown_disabled() -> None:
    app = _Toggle()
    async with app.run_test() as pilot:
        await pilot.pause()
        save = next(k for k in _keys(app) if k.description == "Save")
        assert not save.has_class("-disabled")
        app.action_toggle()
        await pilot.pause()
        await pilot.pause()
        save = next(k for k in _keys(app) if k.description == "Save")
        assert save.has_class("-disabled")


async def test_keys_are_styled_as_textual_styles_them(sample_copy: Path) -> None:
    """Bound keys take the footer's (non-compact) style; the palette key stays compact, as in Textual."""
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(130, 44)) as pilot:
        await pilot.pause()
        keys = _keys(app)
        palette = [k for k in keys if k.has_class("-command-palette")]
        assert len(palette) == 1 and palette[0].compact and palette[0].has_class("-compact")
        assert all(not k.compact and not k.has_class("-compact") for k in keys if k not in palette)

"""The lora-tui Textual app: theme registration, keymap and the first screen."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from lora_tui.core.project import Project
from lora_tui.ui.commands import ProjectCommands
from lora_tui.ui.screens.overview import OverviewScreen
from lora_tui.ui.themes import DEFAULT_THEME, load_themes


class LoraTuiApp(App[int]):
    TITLE = "lora-tui"
    COMMANDS = App.COMMANDS | {ProjectCommands}
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project
        loaded = load_themes()
        for theme in loaded.themes:
            self.register_theme(theme)
        self._theme_problems = loaded.problems
        if DEFAULT_THEME in self.available_themes:
            self.theme = DEFAULT_THEME

    def on_mount(self) -> None:
        if self._theme_problems:
            self.notify("theme files skipped: " + "; ".join(self._theme_problems), severity="warning",
                        markup=False)
        self.push_screen(OverviewScreen(self.project))


def run_app(project: Project) -> int:
    LoraTuiApp(project).run()
    return 0

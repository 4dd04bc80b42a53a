"""The lora-tui Textual app: theme registration, keymap and the first screen."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from textual import work
from textual.app import App

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Journal
from lora_tui.core.project import Project
from lora_tui.ui import gc_pause
from lora_tui.ui.actions import Action, Actions, ScreenActionsProvider
from lora_tui.ui.screens.overview import OverviewScreen
from lora_tui.ui.settings import Settings, load_keymap
from lora_tui.ui.themes import DEFAULT_THEME, load_themes


class LoraTuiApp(App[int]):
    TITLE = "lora-tui"
    COMMANDS = App.COMMANDS | {ScreenActionsProvider}
    ACTIONS = Actions("app", "Everywhere", actions=(
        Action("app.quit", "q", "Quit", "quit", palette=False),
        Action("app.help", "f1", "Help", "toggle_help", title="Show or hide this help", palette=False),
    ))
    BINDINGS = ACTIONS.bindings()

    def __init__(self, project: Project, settings: Settings | None = None) -> None:
        super().__init__()
        self.project = project
        self.settings = settings or Settings()
        loaded = load_themes()
        for theme in loaded.themes:
            self.register_theme(theme)
        self._problems = [*loaded.problems, *self.settings.problems]
        wanted = self.settings.theme or self.settings.saved_theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        self._start_theme = self.theme  # not a pick: the startup theme is never saved
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)

    def on_mount(self) -> None:
        self._start_hold = gc_pause.Hold()
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self._problems:
            self.notify("settings skipped: " + "; ".join(self._problems), severity="warning", markup=False)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # the SSH link is gone: leave cleanly so screens save what is being edited
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)
        self._recover_then_open()

    def _recover_then_open(self) -> None:
        """Finish a caption edit a crash interrupted before any screen reads the captions."""
        try:
            journal = Journal(self.project.root)
            interrupted = journal.interrupted
        except LoraTuiError as exc:  # a damaged journal: say so, the rest of the app still works
            self.notify(str(exc), severity="error", markup=False, timeout=15)
            interrupted = False
        if not interrupted:
            self._open_overview()
            return
        self.notify("finishing a caption edit that was interrupted…", markup=False, timeout=3)
        self._recover(journal)

    @work(thread=True, exit_on_error=False)
    def _recover(self, journal: Journal) -> None:
        try:
            line = journal.recover(wait=None)
        except LoraTuiError as exc:
            line = f"could not recover the interrupted caption edit: {exc}"
        self.call_from_thread(self._recovered, line)

    def _recovered(self, line: str | None) -> None:
        if line:
            self.notify(line, markup=False, timeout=20)
        self._open_overview()

    def _open_overview(self) -> None:
        from lora_tui.core import unsaved

        kept = unsaved.stashed(self.project.root)
        if kept:
            self.notify(f"{len(kept)} caption edit(s) could not be saved when the app last closed; they are kept "
                        f"in {unsaved.folder(self.project.root)} (copy them over the captions, then delete them)",
                        severity="warning", markup=False, timeout=30)
        self.push_screen(OverviewScreen(self.project))
        self.call_after_refresh(self._start_hold.release)  # the first screen is on show
        # -- runs (issue 11): a toast, the bell and a desktop notification when a run ends --
        from lora_tui.ui.notify import RunNotifier

        self.run_notifier = RunNotifier(self, self.project.root)
        self.run_notifier.start()

    def on_unmount(self) -> None:
        self._start_hold.release()

    def _remember_theme(self, theme) -> None:
        """A theme picked in the palette is the next start's theme too."""
        if not self.settings.remember_theme or theme.name in (self.settings.saved_theme, self._start_theme):
            return
        self._start_theme = None  # from now on every pick counts, the first theme again too
        from lora_tui.ui.settings import save_theme

        problem = save_theme(theme.name)
        if problem:
            self.notify(problem, severity="warning", markup=False)
        else:
            self.settings.saved_theme = theme.name

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()


def run_app(project: Project, theme: str | None = None, image_protocol: str | None = None) -> int:
    """Start the app; a theme or setting that cannot be used is a one-line error before the screen opens."""
    from lora_tui.ui import graphics
    from lora_tui.ui.settings import load_saved_theme, resolve_image_protocol

    try:
        protocol = graphics.prepare(resolve_image_protocol(image_protocol, detect=graphics.detect))
    except ValueError as exc:
        raise LoraTuiError(str(exc)) from None
    keymap, problems = load_keymap()
    saved, theme_problems = load_saved_theme()
    settings = Settings(theme=theme, image_protocol=protocol, keymap=keymap, problems=problems + theme_problems,
                        saved_theme=saved, remember_theme=True)
    app = LoraTuiApp(project, settings)
    if theme and theme not in app.available_themes:
        raise LoraTuiError(f"unknown theme {theme!r}",
                           hint="one of: " + ", ".join(sorted(app.available_themes)))
    app.run()
    return 0

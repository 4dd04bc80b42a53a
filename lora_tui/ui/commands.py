"""Palette entries by domain ("project: …", "dataset: …", "captions: …", "config: …").

The app's palette uses :class:`~lora_tui.ui.actions.ScreenActionsProvider`, which offers every action
of the screen it was opened over; these are the same entries narrowed to one group, for callers that
want a single domain (and the tests that check which domains a screen offers).
"""

from __future__ import annotations

from lora_tui.ui.actions import ScreenActionsProvider


class _GroupCommands(ScreenActionsProvider):
    GROUP = ""

    def _available(self) -> list[tuple[str, str]]:
        prefix = f"{self.GROUP}: "
        return [(t, a) for t, a in super()._available() if t.startswith(prefix)]


class ProjectCommands(_GroupCommands):
    GROUP = "project"


class DatasetCommands(_GroupCommands):
    GROUP = "dataset"


class CaptionCommands(_GroupCommands):
    GROUP = "captions"


class ConfigCommands(_GroupCommands):
    GROUP = "config"

"""Command palette providers, one per domain ("project: …", "dataset: …", "captions: …", "config: …").

Each offers the actions of the screen on top, so the palette only lists what applies now.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class _ScreenActions(Provider):
    """Commands are (title, action) pairs run on the current screen when it has that action."""

    COMMANDS: tuple[tuple[str, str], ...] = ()

    def _available(self) -> list[tuple[str, str]]:
        screen = self.app.screen
        return [(t, a) for t, a in self.COMMANDS if hasattr(screen, f"action_{a.split('(')[0]}")]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        screen = self.app.screen
        for title, action in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(screen.run_action, action), help=title)

    async def discover(self) -> Hits:
        screen = self.app.screen
        for title, action in self._available():
            yield DiscoveryHit(title, partial(screen.run_action, action), help=title)


class ProjectCommands(_ScreenActions):
    COMMANDS = (
        ("project: Rescan images and captions", "rescan"),
        ("project: Write configs for sd-scripts", "write_configs"),
        ("project: Open the dataset screen", "dataset"),
        ("project: Open the config screen", "config"),
        ("project: Train (launch a run)", "train"),
        ("project: Runs and queue", "runs"),
    )


class DatasetCommands(_ScreenActions):
    COMMANDS = (
        ("dataset: Show or hide the tag panel", "toggle_tags"),
        ("dataset: Filter by text", "filter_text"),
        ("dataset: Next subset filter", "cycle_subset"),
        ("dataset: Next review-state filter", "cycle_state"),
        ("dataset: Clear the filter", "clear_filter"),
        ("dataset: Next unreviewed image", "next_unreviewed"),
        ("dataset: Mark reviewed", "mark('reviewed')"),
        ("dataset: Flag", "mark('flagged')"),
        ("dataset: Exclude from training", "mark('excluded')"),
    )


class CaptionCommands(_ScreenActions):
    COMMANDS = (
        ("captions: Rename a tag in the captions shown", "rename_tag"),
        ("captions: Remove a tag from the captions shown", "remove_tag"),
        ("captions: Add a tag to the captions shown", "add_tag"),
        ("captions: Find and replace", "find_replace"),
        ("captions: Undo the last caption edit", "undo"),
        ("captions: Redo", "redo"),
    )


class ConfigCommands(_ScreenActions):
    COMMANDS = (("config: Write configs for sd-scripts", "write_configs"),)


class RunCommands(_ScreenActions):
    """The train, runs and monitor screens (issue 11)."""

    COMMANDS = (
        ("train: Launch the run", "launch"),
        ("train: Add the run to the queue", "enqueue"),
        ("run: Stop after the current step", "stop"),
        ("run: Stop at once", "stop_now"),
        ("run: Resume from the newest saved state", "resume"),
        ("run: Show the output folder", "open_output"),
        ("run: Copy the output folder path", "copy_output"),
        ("runs: Refresh", "refresh_runs"),
        ("runs: Move the queued run up", "move_queued(-1)"),
        ("runs: Move the queued run down", "move_queued(1)"),
        ("runs: Take the queued run out of the queue", "remove_queued"),
    )

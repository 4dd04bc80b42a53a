"""Command palette provider for project actions ("project: …")."""

from __future__ import annotations

from functools import partial

from textual.command import Hit, Hits, Provider


class ProjectCommands(Provider):
    COMMANDS = (
        ("project: Rescan images and captions", "rescan"),
        ("project: Write configs for sd-scripts", "write_configs"),
    )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        screen = self.app.screen
        for title, action in self.COMMANDS:
            score = matcher.match(title)
            if score > 0 and hasattr(screen, f"action_{action}"):
                yield Hit(score, matcher.highlight(title), partial(screen.run_action, action), help=title)

"""Wait for the overview's background analysis to land before asserting or snapshotting."""

from __future__ import annotations

from textual.widgets import Static


async def settled(pilot) -> None:
    app = pilot.app
    for _ in range(200):
        await pilot.pause()
        await app.workers.wait_for_complete()
        steps = app.screen.query("#steps")
        if steps and "scanning" not in str(steps.first(Static).render()):
            break
        await pilot.pause(0.02)
    await pilot.pause()

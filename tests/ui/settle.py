"""Wait for the overview's background analysis to land (and paint) before asserting or snapshotting."""

from __future__ import annotations

from textual.widgets import DataTable, Static


def _landed(app) -> bool:
    screen = app.screen
    steps = screen.query("#steps")
    findings = screen.query("#findings")
    latest = screen.query("#latest")  # the latest runs (read by a worker too)
    if latest and not latest.first().loaded:
        return False
    return bool(steps and findings and "scanning" not in str(steps.first(Static).render())
                and findings.first(DataTable).row_count > 0 and "errors" in screen.title)


async def settled(pilot) -> None:
    app = pilot.app
    for _ in range(500):
        await pilot.pause()
        await app.workers.wait_for_complete()
        if _landed(app):
            break
        await pilot.pause(0.02)
    else:  # pragma: no cover - a hang here is a real failure
        raise AssertionError("the overview never finished its analysis")
    await pilot.wait_for_scheduled_animations()
    # DataTable sizes its columns on idle after rows arrive: wait until two frames agree.
    previous = None
    for _ in range(100):
        await pilot.pause(0.02)
        frame = app.export_screenshot()
        if frame == previous:
            return
        previous = frame


async def wait_until(pilot, check, what: str, tries: int = 300) -> None:
    """Pause until ``check()`` holds (workers and watchers land asynchronously)."""
    for _ in range(tries):
        await pilot.pause(0.02)
        if check():
            return
    raise AssertionError(f"timed out waiting for {what}")


async def palette_run(pilot, typed: str) -> None:
    """Open the palette with ctrl+p, type, wait for the list, press enter: what a user does."""
    from textual.command import CommandPalette

    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*typed)
    await wait_until(pilot, lambda: app.screen.query_one("CommandList").option_count > 0, "palette hits")
    await pilot.pause(0.1)
    await pilot.press("down", "enter")  # down highlights the first hit, enter runs it

"""The monitor's actions on real processes (the stand-in trainer under its supervisor) and on ended runs."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from lora_tui.core import project
from lora_tui.runs.launch import spawn_supervisor
from lora_tui.ui.actions import ScreenActionsProvider
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.monitor import MonitorScreen
from tests.runs.helpers import fake_run, wait_for_end, wait_for_step
from tests.ui import recorded_runs as rr
from tests.ui.settle import wait_until


async def _monitor(pilot, run_dir: Path) -> MonitorScreen:
    await pilot.pause()
    screen = MonitorScreen(run_dir)
    pilot.app.push_screen(screen)
    await wait_until(pilot, lambda: screen.history_loaded, "the monitor")
    return screen


async def test_s_stops_the_run_after_its_step_and_the_monitor_shows_what_it_saved(sample_copy: Path) -> None:
    run_dir = fake_run(sample_copy, "--steps", "100000", run_id="20270101-000000-fake")
    spawn_supervisor(run_dir)
    try:
        wait_for_step(run_dir, 3)
        app = LoraTuiApp(project.load(sample_copy))
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await _monitor(pilot, run_dir)
            assert screen.info.state == "running"
            await pilot.press("s")
            await wait_until(pilot, lambda: screen.info.state == "stopped", "the stop", tries=1500)
            await wait_until(pilot, lambda: screen.query_one("#checkpoints", DataTable).row_count == 2,
                             "the saved LoRA and state", tries=800)
            kinds = {str(screen.query_one("#checkpoints", DataTable).get_row_at(i)[1]) for i in range(2)}
            assert kinds == {"lora", "state"}
    finally:
        assert wait_for_end(run_dir).state == "stopped"


async def test_resume_without_a_saved_state_says_why(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        await _monitor(pilot, run_dir)
        await pilot.press("u")
        await wait_until(pilot, lambda: any("saved no state" in n.message for n in app._notifications),
                         "the refusal")
        assert isinstance(app.screen, MonitorScreen) and len(list((sample_copy / "runs").iterdir())) == 1


async def test_the_palette_offers_stop_for_a_live_run_and_resume_for_an_ended_one(sample_copy: Path) -> None:
    live, ended = rr.running(sample_copy), rr.crashed(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _monitor(pilot, live)
        titles = [t for t, _ in ScreenActionsProvider(screen)._available()]
        assert "run: Stop after the current step (saves first)" in titles
        assert not any("Resume" in t for t in titles)
        await pilot.press("escape")
        screen = await _monitor(pilot, ended)
        titles = [t for t, _ in ScreenActionsProvider(screen)._available()]
        assert any("Resume" in t for t in titles) and not any("Stop" in t for t in titles)

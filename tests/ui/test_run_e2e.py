"""Runs for real from the app on a tiny model (CPU, tens of seconds): launch from the train screen,
attach to a run the CLI started, quit the app while a run trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core import project
from lora_tui.runs import control, liveness, reader
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.monitor import MonitorScreen
from lora_tui.ui.screens.train import TrainScreen
from lora_tui.ui.widgets.run.latest import LatestRuns
from tests.runs.helpers import ENV, wait_for_end, wait_for_step
from tests.train.conftest import tiny_model_dir  # noqa: F401 - the shared tiny model
from tests.train.trainer_helpers import tiny_project
from tests.ui.settle import wait_until

pytestmark = pytest.mark.slow


async def _launch_from_train_screen(pilot) -> MonitorScreen:
    app = pilot.app
    await wait_until(pilot, lambda: app.screen.query("#latest") and app.screen.query_one(LatestRuns).loaded,
                     "the overview")
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.preflight is not None,
                     "the train screen's checks")
    assert not app.screen.preflight.blocked, app.screen.preflight.errors
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor of the new run", tries=3000)
    return app.screen


async def test_launch_from_the_train_screen_runs_to_the_end_and_the_monitor_shows_its_loss(
        tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 12})
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        monitor = await _launch_from_train_screen(pilot)
        run_dir = monitor.run_dir
        assert run_dir.parent == root / "runs"
        await wait_until(pilot, lambda: monitor.info is not None and monitor.info.state == "finished",
                         "the run's end", tries=6000)
        await wait_until(pilot, lambda: len(monitor.series.loss.raw.points()[0]) >= 12, "the loss of every step",
                         tries=500)
        xs, ys = monitor.series.loss.raw.points()
        assert xs[-1] == 12 and all(y > 0 for y in ys)
    assert reader.read_run(run_dir).state == "finished"


async def test_quitting_the_app_leaves_the_run_training(tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 400})
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        monitor = await _launch_from_train_screen(pilot)
        run_dir = monitor.run_dir
        await pilot.press("q")
    try:
        wait_for_step(run_dir, 2, timeout=120)
        info = reader.read_run(run_dir)
        assert info.state == "running" and liveness.status_alive(info.status)
    finally:
        control.stop_run(run_dir, now=True, by="the test")
        wait_for_end(run_dir, timeout=60)


async def test_a_run_the_cli_started_shows_in_the_latest_runs_and_its_monitor_follows_it(
        tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 30})
    subprocess.run([sys.executable, "-m", "lora_tui", "train", str(root), "--detach"], env=ENV, check=True,
                   capture_output=True, timeout=180)
    run_dir = reader.run_dirs(root)[0]
    wait_for_step(run_dir, 1, timeout=120)
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.screen.query("#latest") and app.screen.query_one(LatestRuns).loaded,
                         "the latest runs")
        table = app.screen.query_one("#latest-runs")
        assert str(table.get_row_at(0)[0]) == run_dir.name
        table.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        monitor = app.screen
        await wait_until(pilot, lambda: monitor.info.state == "finished", "the run's end", tries=6000)
        await wait_until(pilot, lambda: len(monitor.series.loss.raw.points()[0]) >= 30, "every step's loss")
        assert monitor.series.loss.raw.points()[0][0] <= 2  # from the start, not only since the app opened


async def test_ctrl_e_queues_the_run_and_the_queues_drainer_trains_it(tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 6})
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.screen.query("#latest") and app.screen.query_one(LatestRuns).loaded,
                         "the overview")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.preflight is not None,
                         "the checks")
        screen = app.screen
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: screen.launched is not None, "the run queued", tries=3000)
        assert app.screen is screen  # queueing keeps the train screen
        run_dir = screen.launched
    assert control.run_spec(run_dir)["run"]["launch"] == "queue"
    assert wait_for_end(run_dir, timeout=240).state == "finished"

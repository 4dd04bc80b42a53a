"""The train screen's checks and the runs screen's queue, driven with Pilot (no run is started here)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import DataTable, Input

from lora_tui.core import project
from lora_tui.runs import contract, queue
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.runs import RunsScreen
from lora_tui.ui.screens.train import TrainScreen
from tests.train.conftest import tiny_model_dir  # noqa: F401 - the shared tiny model
from tests.train.trainer_helpers import tiny_project
from tests.ui.settle import wait_until


async def _train_screen(pilot) -> TrainScreen:
    await pilot.pause()
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TrainScreen)
                     and pilot.app.screen.preflight is not None, "the train screen's checks")
    return pilot.app.screen


async def test_lint_errors_block_the_launch_and_say_why(sample_copy: Path) -> None:
    toml = sample_copy / "lora-tui.toml"  # the sample without its base model: a lint error
    toml.write_text(toml.read_text().replace('"lora-tui:tiny-sd15"', '""', 1))
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _train_screen(pilot)
        assert screen.preflight.blocked
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("no base model" in n.message for n in app._notifications)
        assert not (sample_copy / "runs").exists()


async def test_a_parameter_edited_on_the_train_screen_is_saved_to_the_project_file(
        tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 12})
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _train_screen(pilot)
        field = screen.query_one("#p-network_dim", Input)
        field.value = "16"
        field.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert project.load(root).training["network_dim"] == 16


async def test_warnings_ask_before_launching_and_no_launches_nothing(
        tmp_path: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 12})
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _train_screen(pilot)
        field = screen.query_one("#p-learning_rate", Input)
        field.value = ""  # no learning rate: sd-scripts' default is far too low, a warning
        field.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.preflight is not None and screen.preflight.warnings,
                         "the warning")
        assert not screen.preflight.blocked
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "Confirm", "the question")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.screen is screen and not screen.launching
        assert not (root / "runs").exists() or not any((root / "runs").iterdir())


def _queued(root: Path, run_id: str) -> None:
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.toml").write_text(f'[run]\nid = "{run_id}"\n', "utf-8")
    contract.write_status(run_dir, contract.new_status(state="queued", created_at=time.time(), launch="queue",
                                                       backend="builtin"))
    queue.enqueue(root, run_id)


async def _runs_screen(pilot, waiting: int) -> RunsScreen:
    await pilot.pause()
    await pilot.press("l")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                     and len(pilot.app.screen.queue_ids) == waiting, "the queue")
    pilot.app.screen.query_one("#queue", DataTable).focus()
    return pilot.app.screen


async def test_the_queue_is_reordered_with_ctrl_arrows(sample_copy: Path) -> None:
    for name in ("20270101-000001-a", "20270101-000002-b", "20270101-000003-c"):
        _queued(sample_copy, name)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _runs_screen(pilot, 3)
        table = screen.query_one("#queue", DataTable)
        table.move_cursor(row=2)
        await pilot.press("ctrl+up")
        await wait_until(pilot, lambda: queue.waiting(sample_copy)[1] == "20270101-000003-c", "the move")
        assert queue.waiting(sample_copy) == ["20270101-000001-a", "20270101-000003-c", "20270101-000002-b"]
        await wait_until(pilot, lambda: screen.queue_ids == queue.waiting(sample_copy), "the table")


async def test_a_queued_run_is_removed_after_a_yes(sample_copy: Path) -> None:
    for name in ("20270101-000001-a", "20270101-000002-b"):
        _queued(sample_copy, name)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _runs_screen(pilot, 2)
        await pilot.press("delete")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "Confirm", "the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.queue_ids == ["20270101-000002-b"], "the removal")
        assert queue.waiting(sample_copy) == ["20270101-000002-b"]
        assert not (sample_copy / "runs" / "20270101-000001-a").exists()


async def test_enter_on_a_run_in_the_runs_screen_opens_its_monitor(sample_copy: Path) -> None:
    from lora_tui.ui.screens.monitor import MonitorScreen
    from tests.ui import recorded_runs as rr

    rr.finished(sample_copy)
    crashed = rr.crashed(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                         and app.screen.query_one("#runs", DataTable).row_count == 2, "the runs")
        app.screen.query_one("#runs", DataTable).focus()
        await pilot.press("down", "enter")  # the second run, newest first: the crashed one
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        assert app.screen.run_dir == crashed


async def test_a_state_that_grows_longer_widens_its_column(tmp_path: Path) -> None:
    import dataclasses

    from textual.app import App

    from lora_tui.runs import reader
    from lora_tui.ui.widgets.run.table import RunsTable
    from tests.ui import recorded_runs as rr

    info = reader.read_run(rr.finished(tmp_path / "p"))

    class One(App):
        def compose(self):
            yield RunsTable(full=False)

    async with One().run_test(size=(120, 10)) as pilot:
        table = pilot.app.query_one(RunsTable)
        table.show([dataclasses.replace(info, state="queued")])  # 6 letters wide at first
        await pilot.pause()
        table.show([info])
        await pilot.pause()
        assert table.columns["state"].get_render_width(table) >= len("finished") + 2
        assert "finished" in str(table.get_cell(info.id, "state"))

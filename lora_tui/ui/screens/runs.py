"""Runs: every run of the project with its live state, and the queue (reorder, remove).

Runs are listed by a worker every few seconds (``reader.list_runs``: a status read and a short
tail per run), so a project with hundreds of runs never stalls the screen; the list pauses while
another screen is on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Static

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.runs import queue, reader
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.run.confirm import Confirm
from lora_tui.ui.widgets.run.table import RunsTable

REFRESH_S = 3.0


def _queue_shown(screen: Any) -> bool:
    return bool(screen.queue_ids)


class RunsScreen(ActionScreen):
    BINDING_GROUP_TITLE = "Runs"
    ACTIONS = Actions("runs", "Runs", group="runs", intro=(
        "Every run of the project, newest first, with its live state; the queue below."), actions=(
        Action("runs.refresh", "r", "Refresh", "refresh_runs", title="Read the runs again now"),
        Action("runs.train", "t", "Train", "train", title="Open the train screen"),
        Action("runs.queue_up", "ctrl+up", "Move up", "move_queued(-1)", title="Move the queued run up",
               when=_queue_shown),
        Action("runs.queue_down", "ctrl+down", "Move down", "move_queued(1)", title="Move the queued run down",
               when=_queue_shown),
        Action("runs.queue_remove", "delete", "Remove from queue", "remove_queued",
               title="Take the queued run out of the queue (asks first)", when=_queue_shown),
        Action("runs.back", "escape", "Back", "dismiss", title="Back", palette=False),
    ), notes=("**enter** on a run opens its monitor · **tab** switches between the runs and the queue",))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    RunsScreen Vertical { padding: 0 1; }
    RunsScreen #runs { height: 2fr; }
    RunsScreen #queue { height: 1fr; }
    RunsScreen .section { color: $primary; text-style: bold; }
    """

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project
        self.queue_ids: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("Runs (enter: monitor)", classes="section")
            yield RunsTable(id="runs")
            yield Static("Queue (ctrl+up/down: reorder · delete: remove)", classes="section", id="queue-title")
            yield DataTable(id="queue", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.project.name} · runs"
        self.query_one("#queue", DataTable).add_columns("#", "run", "state", "backend")
        self.action_refresh_runs()
        self._timer = self.set_interval(REFRESH_S, self.action_refresh_runs)

    def on_screen_suspend(self) -> None:
        self._timer.pause()

    def on_screen_resume(self) -> None:
        self._timer.resume()
        self.action_refresh_runs()

    def action_refresh_runs(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _list(self) -> None:
        runs = reader.list_runs(self.project.root)
        items = queue.describe(self.project.root)
        self.app.call_from_thread(self._show, runs, items)

    def _show(self, runs: list[reader.RunInfo], items: list[dict[str, Any]]) -> None:
        if not self.is_mounted:  # left before the worker finished
            return
        self.query_one(RunsTable).show(runs)
        table = self.query_one("#queue", DataTable)
        waiting = [i for i in items if i.get("position")]
        ids = [str(i["id"]) for i in waiting]
        if ids != self.queue_ids:
            row = table.cursor_row
            table.clear()
            for item in waiting:
                table.add_row(str(item["position"]), Text(str(item["id"])), Text(str(item.get("state") or "")),
                              Text(str(item.get("backend") or "")), key=str(item["id"]))
            if ids:
                table.move_cursor(row=min(row, len(ids) - 1))
            self.queue_ids = ids
        self.query_one("#queue-title", Static).update(
            f"Queue: {len(waiting)} waiting (ctrl+up/down: reorder · delete: remove)" if waiting else "Queue: empty")

    @on(RunsTable.Open)
    def _open(self, message: RunsTable.Open) -> None:
        self.open_monitor(message.info.dir)

    def open_monitor(self, run_dir: Path) -> None:
        from lora_tui.ui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(run_dir))

    def action_train(self) -> None:
        from lora_tui.ui.screens.train import TrainScreen

        self.app.push_screen(TrainScreen(self.project))

    def _queued_selected(self) -> str | None:
        table = self.query_one("#queue", DataTable)
        if not self.queue_ids or not 0 <= table.cursor_row < len(self.queue_ids):
            return None
        return self.queue_ids[table.cursor_row]

    def action_move_queued(self, delta: int) -> None:
        run_id = self._queued_selected()
        if run_id is None:
            self.notify("the queue is empty", markup=False)
            return
        try:
            position = queue.move(self.project.root, run_id, delta)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.queue_ids = []  # rebuild
        self._show_after_move(position)

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _show_after_move(self, position: int) -> None:
        runs = reader.list_runs(self.project.root)
        items = queue.describe(self.project.root)
        self.app.call_from_thread(self._moved, runs, items, position)

    def _moved(self, runs: list[reader.RunInfo], items: list[dict[str, Any]], position: int) -> None:
        if not self.is_mounted:
            return
        self._show(runs, items)
        self.query_one("#queue", DataTable).move_cursor(row=position - 1)

    def action_remove_queued(self) -> None:
        run_id = self._queued_selected()
        if run_id is None:
            self.notify("the queue is empty", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                queue.remove(self.project.root, run_id)
            except LoraTuiError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self.notify(f"{run_id} taken out of the queue", markup=False)
            self.action_refresh_runs()

        self.app.push_screen(Confirm(f"Take {run_id} out of the queue?",
                                     "It never started; its run folder is deleted."), answered)

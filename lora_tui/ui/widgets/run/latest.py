"""The overview's "latest runs": the newest few runs of the project, live, as soon as the app opens.

Only the newest ``LIMIT`` run folders are read (a status and a short tail each, in a worker), every
few seconds while the overview is the screen on top; enter opens a run's monitor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from lora_tui.runs import contract, reader
from lora_tui.ui.widgets.run.table import RunsTable

LIMIT = 5
REFRESH_S = 3.0


def latest_runs(root: Path, limit: int = LIMIT) -> list[reader.RunInfo]:
    out = []
    for run_dir in reader.run_dirs(root):
        if len(out) >= limit:
            break
        read = contract.read_status(run_dir)
        if read[1] == "status.json is missing" and not (run_dir / "run.toml").exists():
            continue
        tail = 200 if read[0].get("state") in contract.ACTIVE else 12
        try:
            out.append(reader.read_run(run_dir, tail=tail, read=read))
        except Exception as exc:  # one unreadable run must not hide the others
            out.append(reader.RunInfo(id=run_dir.name, dir=run_dir, state="unknown", status={},
                                      reason=f"cannot read this run: {type(exc).__name__}: {exc}"))
    return out


class LatestRuns(Vertical):
    DEFAULT_CSS = """
    LatestRuns { height: auto; }
    LatestRuns RunsTable { height: auto; max-height: 7; }
    LatestRuns #no-runs { color: $text-muted; }
    """

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("reading runs/…", id="no-runs", markup=False)
        table = RunsTable(full=False, limit=LIMIT, id="latest-runs")
        table.display = False  # until runs are read (hidden before mounting: one layout, not two)
        yield table

    def on_mount(self) -> None:
        self.reload()
        self.timer = self.set_interval(REFRESH_S, self.reload)

    def pause(self) -> None:
        self.timer.pause()

    def resume(self) -> None:
        self.timer.resume()
        self.reload()

    @work(thread=True, exclusive=True, group="latest-runs", exit_on_error=False)
    def reload(self) -> None:
        runs = latest_runs(self.root)
        self.app.call_from_thread(self._show, runs)

    def _show(self, runs: list[reader.RunInfo]) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(RunsTable)
        note = self.query_one("#no-runs", Static)
        table.show(runs)
        table.display = bool(runs)
        note.display = not runs
        note.update("no runs yet: t opens the train screen")
        self.loaded = True

"""A table of runs (the overview's latest runs, the runs screen's full list).

Rows are keyed by run id and updated in place, so a refresh every few seconds neither flickers nor
moves the cursor. Run ids and reasons are shown as plain Text (never markup).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from lora_tui.runs.follow import fmt_duration, fmt_mb
from lora_tui.runs.reader import RunInfo
from lora_tui.ui.widgets.run.texts import state_text

BAR_CELLS = 12


def progress_bar(info: RunInfo) -> Text:
    if not info.total_steps:
        return Text("")
    frac = max(0.0, min(1.0, info.step / info.total_steps))
    done = round(frac * BAR_CELLS)
    style = "green" if info.state in ("running", "finished") else "yellow" if info.active else "red" \
        if info.state in ("failed", "crashed") else "dim"
    return Text("█" * done + "░" * (BAR_CELLS - done), style=style)


def row_of(info: RunInfo, full: bool, now: float) -> list[Any]:
    step = f"{info.step}/{info.total_steps}" if info.total_steps else (str(info.step) if info.step else "")
    loss = f"{info.loss:.4f}" if info.loss is not None else (f"{info.loss_avg:.4f}" if info.loss_avg is not None
                                                               else "")
    run = Text(info.id)
    if info.best:  # the checkpoint picked in the grid
        run.append(f"  ★ {info.best['label']}", style="bold")
    row: list[Any] = [run, state_text(info.state), progress_bar(info), step, loss]
    if full:
        if info.started_at is not None:
            end = info.ended_at if (info.ended_at is not None and not info.active) else now
            took = fmt_duration(max(0.0, end - info.started_at))
        else:
            took = ""
        note = info.reason if info.reason and not info.active and info.reason != info.state else ""
        row += [fmt_mb(info.peak_vram_mb) if info.peak_vram_mb else "", took, Text(info.backend or ""),
                Text(note, style="dim")]
    return row


class RunsTable(DataTable):
    """Enter (or a click) on a row posts :class:`RunsTable.Open` with the run's folder."""

    class Open(Message):
        def __init__(self, info: RunInfo) -> None:
            super().__init__()
            self.info = info

    def __init__(self, *, full: bool = True, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.full, self.limit = full, limit
        self.runs: dict[str, RunInfo] = {}

    def on_mount(self) -> None:
        columns = ["run", "state", "progress", "step", "loss"]
        if self.full:
            columns += ["peak VRAM", "duration", "backend", "note"]
        for name in columns:
            self.add_column(name, key=name)

    def show(self, runs: list[RunInfo], now: float | None = None) -> None:
        now = time.time() if now is None else now
        runs = runs[: self.limit] if self.limit else runs
        ids = [r.id for r in runs]
        keys = [str(k.value) for k in self.rows]
        rows = {r.id: row_of(r, self.full, now) for r in runs}
        if ids != keys:  # new, gone or reordered runs: rebuild, keeping the cursor on its run
            current = keys[self.cursor_row] if keys and 0 <= self.cursor_row < len(keys) else None
            self.clear()
            for run_id in ids:
                self.add_row(*rows[run_id], key=run_id)
            if current in ids:
                self.move_cursor(row=ids.index(current))
        else:
            columns = list(self.columns)
            for run_id in ids:
                for col, value in zip(columns, rows[run_id]):
                    if str(self.get_cell(run_id, col)) != str(value):
                        self.update_cell(run_id, col, value, update_width=True)  # "running" → "finished"
        self.runs = {r.id: r for r in runs}

    @property
    def selected(self) -> RunInfo | None:
        keys = [str(k.value) for k in self.rows]
        if not keys or not 0 <= self.cursor_row < len(keys):
            return None
        return self.runs.get(keys[self.cursor_row])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        info = self.runs.get(str(event.row_key.value))
        if info is not None:
            self.post_message(self.Open(info))

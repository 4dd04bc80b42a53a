"""Lint findings, errors first."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from lora_tui.core.lint import Finding, LintReport
from lora_tui.ui.widgets.tables import fill_table

STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}
ORDER = {"error": 0, "warning": 1, "info": 2}


class FindingsTable(DataTable):
    DEFAULT_CSS = "FindingsTable { height: 1fr; }"

    COLUMNS = ("", "finding")
    findings: list[Finding] = []

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns(*self.COLUMNS)

    @dataclass
    class Picked(Message):
        finding: Finding

    def show(self, report: LintReport) -> None:
        ordered = sorted(report.findings, key=lambda f: ORDER.get(f.severity, 3))
        self.findings = ordered
        rows = []
        for f in ordered:
            text = Text(f.message)  # user paths and captions: never markup
            if f.fix:
                text.append(f"\n→ {f.fix}", style="dim")
            rows.append((Text(f.severity, style=STYLES.get(f.severity, "")), text))
        fill_table(self, self.COLUMNS, rows, max_width=200, multiline=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.findings):
            self.post_message(self.Picked(self.findings[event.cursor_row]))

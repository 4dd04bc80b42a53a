"""Lint findings, errors first."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from lora_tui.core.lint import LintReport

STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}
ORDER = {"error": 0, "warning": 1, "info": 2}


class FindingsTable(DataTable):
    DEFAULT_CSS = "FindingsTable { height: 1fr; }"

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("", "finding", "fix")

    def show(self, report: LintReport) -> None:
        self.clear()
        for f in sorted(report.findings, key=lambda f: ORDER.get(f.severity, 3)):
            self.add_row(Text(f.severity, style=STYLES.get(f.severity, "")), Text(f.message), Text(f.fix or ""))

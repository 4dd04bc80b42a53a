"""Tag panel: every tag with its caption count over the current filter."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from lora_tui.ui.widgets.tables import fill_table


class TagPanel(DataTable):
    DEFAULT_CSS = "TagPanel { width: 34; height: 1fr; border-left: tall $panel; }"
    COLUMNS = ("count", "tag")

    @dataclass
    class Picked(Message):
        tag: str

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns(*self.COLUMNS)

    def show(self, counts: Counter[str], active: str | None = None) -> None:
        rows = []
        for tag, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            style = "bold reverse" if tag == active else ""
            rows.append((Text(str(count), style=style), Text(tag, style=style)))
        fill_table(self, self.COLUMNS, rows, max_width=60)

    @property
    def current_tag(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.get_row_at(self.cursor_row)[1])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        tag = self.current_tag
        if tag is not None:
            self.post_message(self.Picked(tag))

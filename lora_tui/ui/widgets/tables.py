"""Filling a DataTable in one go, with column widths measured up front.

DataTable measures auto-width columns on idle, after the header may already have been painted and
cached at the label's width; measuring here keeps header and body in step on the first frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


def _width(cell: Cell) -> int:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max((cell_len(line) for line in text.splitlines()), default=0)


def fill_table(table: DataTable, columns: Sequence[str], rows: Sequence[Sequence[Cell]],
               max_width: int = 80, multiline: bool = False) -> None:
    """Replace the table's columns and rows; column widths fit the widest cell (capped).

    ``multiline`` gives each row the height of its tallest cell (for cells with newlines).
    """
    table.clear(columns=True)
    for index, label in enumerate(columns):
        width = max([cell_len(label), *(_width(row[index]) for row in rows)])
        table.add_column(label, width=min(width, max_width))
    if multiline:
        for row in rows:
            table.add_row(*row, height=None)
    else:
        table.add_rows(rows)

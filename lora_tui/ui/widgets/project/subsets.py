"""The subsets table: one row per subset with what sd-scripts will see in it."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from lora_tui.core.scan import SubsetScan
from lora_tui.ui.widgets.tables import fill_table


def _display_path(root: Path, path: Path | None) -> str:
    """Folders inside the project show relative to it; others in full."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class SubsetTable(DataTable):
    """Read-only view of the scan; the project model stays in core."""

    DEFAULT_CSS = "SubsetTable { height: auto; max-height: 14; }"

    COLUMNS = ("dataset.subset", "name", "kind", "images", "captions", "repeats", "folder")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*self.COLUMNS)

    def show(self, scans: list[SubsetScan]) -> None:
        rows = []
        for scan in scans:
            sub = scan.subset
            captioned = sum(1 for r in scan.records if r.caption_path or r.meta_caption is not None)
            rows.append((
                f"{sub.dataset_index}.{sub.index}",
                Text(sub.name),  # user text: never parsed as markup
                "reg" if sub.is_reg else "train",
                str(len(scan.records)) if not scan.error else Text("error", style="bold red"),
                f"{captioned}/{len(scan.records)}",
                str(sub.get("num_repeats")),
                Text(_display_path(sub.root, sub.image_dir or sub.path("metadata_file"))),
            ))
        fill_table(self, self.COLUMNS, rows)

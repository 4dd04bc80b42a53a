"""The subsets table: one row per subset with what sd-scripts will see in it."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from lora_tui.core.review import ReviewMarks
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

    COLUMNS = ("dataset.subset", "name", "kind", "images", "captions", "reviewed", "flagged", "excluded",
               "repeats", "class tokens", "folder")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*self.COLUMNS)

    def show(self, scans: list[SubsetScan], marks: ReviewMarks) -> None:
        rows = []
        counts = {mark: marks.with_mark(mark) for mark in ("reviewed", "flagged", "excluded")}
        for scan in scans:
            sub = scan.subset
            captioned = sum(1 for r in scan.records if r.caption_path or r.meta_caption is not None)
            keys = [marks.key(r.path_text) for r in scan.records]
            marked = {m: sum(1 for k in keys if k in c) for m, c in counts.items()}
            rows.append((
                f"{sub.dataset_index}.{sub.index}",
                Text(sub.name),  # user text: never parsed as markup
                "reg" if sub.is_reg else "train",
                str(len(scan.records)) if not scan.error else Text("error", style="bold red"),
                f"{captioned}/{len(scan.records)}",
                str(marked["reviewed"]), str(marked["flagged"]), str(marked["excluded"]),
                str(sub.get("num_repeats")),
                Text(str(sub.get("class_tokens") or "")),
                Text(_display_path(sub.root, sub.image_dir or sub.path("metadata_file"))),
            ))
        fill_table(self, self.COLUMNS, rows)

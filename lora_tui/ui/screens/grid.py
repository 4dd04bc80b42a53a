"""Grid: the checkpoint × weight cells `lora-tui grid RUN` drew, to pick the best checkpoint.

Reads only the run folder (grid/grid.json and events.jsonl); drawing the grid needs torch and runs
in the CLI (`lora-tui grid`). Arrows move between cells (rows: checkpoints, columns: weights), the
picture shows the cell under the cursor, `enter` shows it large, `[`/`]` change the prompt, `b`
marks the cell's checkpoint as the run's best (a `best` event, through runs.contract), `y` copies
the checkpoint's path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Header, Static

from lora_tui.runs import contract
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.run.panel import TextPanel

MANIFEST = Path("grid") / "grid.json"


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("checkpoints") and data.get("cells") else None


def best_of(run_dir: Path) -> dict[str, Any] | None:
    """The last `best` event of the run (the chosen checkpoint), if any."""
    best = None
    for event in contract.tail_events(run_dir, 5000):
        if event.get("kind") == "best":
            best = event
    return best


class GridScreen(ActionScreen):
    BINDING_GROUP_TITLE = "Grid"
    ACTIONS = Actions("grid", "Checkpoint grid", group="grid", intro=(
        "The images `lora-tui grid RUN` drew: rows are checkpoints, columns LoRA weights, every cell of a "
        "prompt with the same seed. Mark the checkpoint you keep as the run's best."), actions=(
        Action("grid.large", "enter", "Large", "large", title="Show the cell large (again: back to the grid)"),
        Action("grid.best", "b", "Best", "best", title="Mark this checkpoint as the run's best"),
        Action("grid.copy", "y", "Copy path", "copy", title="Copy the checkpoint's path (OSC 52)"),
        Action("grid.prev", "left_square_bracket", "Prev prompt", "prompt(-1)", title="Previous prompt"),
        Action("grid.next", "right_square_bracket", "Next prompt", "prompt(1)", title="Next prompt"),
        Action("grid.back", "escape", "Back", "dismiss", title="Back", palette=False),
    ))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    GridScreen #grid-head { height: 3; padding: 0 1; background: $boost; }
    GridScreen #cells { height: auto; max-height: 12; }
    GridScreen ImagePreview { height: 1fr; min-height: 4; }
    GridScreen.large #cells { display: none; }
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.manifest = read_manifest(self.run_dir)
        self.prompt_keys: list[str] = sorted((self.manifest or {}).get("cells", {}), key=int)
        self.prompt_at = 0
        self.best = best_of(self.run_dir)

    def compose(self) -> ComposeResult:
        yield Header()
        yield TextPanel("", id="grid-head")
        yield DataTable(id="cells", cursor_type="cell", zebra_stripes=True)
        yield ImagePreview()
        yield Static("", id="grid-cell")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"grid · {self.run_dir.name}"
        if self.manifest is None:
            self.query_one("#grid-head", TextPanel).set(
                f"no grid yet for {self.run_dir.name}\nrender one: lora-tui grid {self.run_dir}")
            return
        self._fill()

    # -- state --------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return list((self.manifest or {}).get("checkpoints", []))

    def _cells(self) -> list[list[str]]:
        if not self.prompt_keys:
            return []
        return (self.manifest or {})["cells"][self.prompt_keys[self.prompt_at]]

    def _selected(self) -> tuple[dict[str, Any], float, Path] | None:
        if self.manifest is None:
            return None
        row, col = self.query_one("#cells", DataTable).cursor_coordinate
        col -= 1  # column 0 holds the checkpoint labels
        cells = self._cells()
        if not (0 <= row < len(cells) and 0 <= col < len(cells[row])):
            return None
        return self.checkpoints[row], self.manifest["weights"][col], Path(cells[row][col])

    def _fill(self) -> None:
        table = self.query_one("#cells", DataTable)
        table.clear(columns=True)
        table.add_column("checkpoint", key="checkpoint")
        for weight in self.manifest["weights"]:
            table.add_column(f"w {weight:g}")
        best_path = (self.best or {}).get("path")
        for ckpt in self.checkpoints:
            label = ckpt["label"] + ("  ★ best" if ckpt["path"] == best_path else "")
            table.add_row(label, *("·" for _ in self.manifest["weights"]))
        table.move_cursor(row=0, column=1)
        self._head()
        self._show()

    def _head(self) -> None:
        prompt = self.manifest["prompts"][self.prompt_at] if self.manifest else {}
        best = self.best.get("label") if self.best else "none marked (b)"
        self.query_one("#grid-head", TextPanel).set(
            f"prompt {self.prompt_at + 1}/{len(self.prompt_keys)}: {prompt.get('prompt', '')}"
            f"  (seed {prompt.get('seed')})"
            f"\n{len(self.checkpoints)} checkpoints × {len(self.manifest['weights'])} weights · best: {best}")

    def _show(self) -> None:
        picked = self._selected()
        if picked is None:
            return
        ckpt, weight, path = picked
        self.query_one(ImagePreview).show(path)
        line = f"{ckpt['label']} at weight {weight:g} · {Path(ckpt['path']).name}"
        self.query_one("#grid-cell", Static).update(Text(line))  # file names may hold "[", never markup

    @on(DataTable.CellHighlighted)
    def _moved(self, event: DataTable.CellHighlighted) -> None:
        if event.coordinate.column == 0:  # the label column: step onto the first picture
            self.query_one("#cells", DataTable).move_cursor(column=1)
            return
        self._show()

    @on(DataTable.CellSelected)
    def _selected_cell(self, event: DataTable.CellSelected) -> None:
        event.stop()  # the table takes enter for itself: it means "large" here too
        self.action_large()

    # -- actions ------------------------------------------------------------------------------------
    def action_large(self) -> None:
        self.set_class(not self.has_class("large"), "large")

    def action_prompt(self, step: int) -> None:
        if len(self.prompt_keys) > 1:
            self.prompt_at = (self.prompt_at + step) % len(self.prompt_keys)
            self._head()
            self._show()

    def action_best(self) -> None:
        picked = self._selected()
        if picked is None:
            self.notify("no grid to pick from", severity="warning")
            return
        ckpt, weight, _ = picked
        fields = {"path": ckpt["path"], "step": ckpt.get("step"), "label": ckpt["label"], "weight": weight}
        if not contract.append_event(self.run_dir, "best", **fields):
            self.notify("cannot write events.jsonl", severity="error")
            return
        self.best = fields
        row = self.query_one("#cells", DataTable).cursor_coordinate
        self._fill()
        self.query_one("#cells", DataTable).cursor_coordinate = row
        self.notify(f"best: {ckpt['label']} ({Path(ckpt['path']).name})", markup=False)

    def action_copy(self) -> None:
        picked = self._selected()
        if picked is None:
            return
        self.app.copy_to_clipboard(picked[0]["path"])
        self.notify(f"copied {picked[0]['path']}", markup=False)

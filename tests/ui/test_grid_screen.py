"""The grid screen: from a run's monitor, move through the checkpoint × weight cells, view one large,
mark the best checkpoint (a `best` event) and copy its path; plus a snapshot of the view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from textual.widgets import DataTable

from lora_tui.core import project
from lora_tui.runs import contract
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.grid import GridScreen
from lora_tui.ui.screens.monitor import MonitorScreen
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from tests.ui import recorded_runs as rr
from tests.ui.settle import wait_until


def write_grid(run_dir: Path) -> dict:
    """A grid as `lora-tui grid` leaves it: two checkpoints × three weights × two prompts."""
    cells_dir = run_dir / "grid" / "cells"
    cells_dir.mkdir(parents=True)
    ckpts = [{"path": str(run_dir / "output" / f"judy-step{s:08d}.safetensors"), "step": s, "epoch": 1,
              "label": f"step {s}"} for s in (500, 1000)]
    weights = [0.6, 0.8, 1.0]
    cells = {}
    for p in range(2):
        rows = []
        for r, _ in enumerate(ckpts):
            row = []
            for c, w in enumerate(weights):
                path = cells_dir / f"p{p:02d}_{r}_w{w:g}.png"
                Image.new("RGB", (64, 64), (40 * r + 60, 60 * c + 40, 90 + 50 * p)).save(path)
                row.append(str(path))
            rows.append(row)
        cells[str(p)] = rows
    manifest = {"checkpoints": ckpts, "weights": weights, "cells": cells, "grids": [], "device": "cpu",
                "prompts": [{"prompt": "judy [smile], red hair", "seed": 1234, "index": 0},
                            {"prompt": "judy at the beach", "seed": 1234, "index": 1}]}
    (run_dir / "grid" / "grid.json").write_text(json.dumps(manifest), "utf-8")
    return manifest


async def _grid(pilot, run_dir: Path) -> GridScreen:
    await pilot.pause()
    monitor = MonitorScreen(run_dir, clock=lambda: rr.T0 + 300)
    pilot.app.push_screen(monitor)
    await wait_until(pilot, lambda: monitor.history_loaded, "the monitor")
    await pilot.press("g")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, GridScreen), "the grid")
    return pilot.app.screen


async def test_g_on_the_monitor_opens_the_grid_and_b_marks_the_best_checkpoint(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    write_grid(run_dir)
    app = LoraTuiApp(project.load(sample_copy))
    copied: list[str] = []
    app.copy_to_clipboard = copied.append
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _grid(pilot, run_dir)
        table = screen.query_one("#cells", DataTable)
        assert table.row_count == 2 and len(table.columns) == 4
        await pilot.press("down", "right")
        await wait_until(pilot, lambda: screen.query_one(ImagePreview).path is not None, "the picture")
        assert str(screen.query_one(ImagePreview).path).endswith("p00_1_w0.8.png")
        await pilot.press("b")
        best = [e for e in contract.iter_all_events(run_dir) if e["kind"] == "best"]
        assert best[-1]["step"] == 1000 and best[-1]["weight"] == 0.8
        assert "★ best" in str(table.get_row_at(1)[0])
        await pilot.press("y")
        assert copied == [best[-1]["path"]]
        await pilot.press("enter")
        assert screen.has_class("large")
        await pilot.press("right_square_bracket")
        assert screen.prompt_at == 1
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen)


async def test_grid_screen_without_a_grid_says_how_to_make_one(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _grid(pilot, run_dir)
        assert "lora-tui grid" in str(screen.query_one("#grid-head").render())
        await pilot.press("b")  # nothing to mark: a notice, no event
        assert not [e for e in contract.iter_all_events(run_dir) if e["kind"] == "best"]


@pytest.fixture
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.mark.usefixtures("_utc")
def test_grid_view_snapshot(snap_compare, sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    write_grid(run_dir)
    contract.append_event(run_dir, "best", path=str(run_dir / "output" / "judy-step00000500.safetensors"),
                          step=500, label="step 500", weight=1.0)

    async def run_before(pilot) -> None:
        screen = await _grid(pilot, run_dir)
        preview = screen.query_one(ImagePreview)
        await wait_until(pilot, lambda: preview.shown is not None and preview.shown_cells == preview.cells
                         == (preview.size.width, preview.size.height), "the picture at the pane's size")
        await pilot.pause(0.1)

    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=(120, 40), run_before=run_before)


async def test_the_runs_list_shows_the_checkpoint_marked_best(sample_copy: Path) -> None:
    from lora_tui.ui.screens.runs import RunsScreen
    from lora_tui.ui.widgets.run.table import RunsTable

    run_dir = rr.finished(sample_copy)
    write_grid(run_dir)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _grid(pilot, run_dir)
        await pilot.press("down", "b", "escape", "escape")
        pilot.app.push_screen(RunsScreen(app.project))
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                         and pilot.app.screen.query_one(RunsTable).row_count == 1, "the runs list")
        first = str(pilot.app.screen.query_one(RunsTable).get_row_at(0)[0])
        assert first.endswith("★ step 1000"), first
        del screen


def test_lora_tui_runs_prints_the_best_checkpoint(sample_copy: Path, capsys) -> None:
    from lora_tui.cli import main

    run_dir = rr.finished(sample_copy)
    contract.append_event(run_dir, "best", path=str(run_dir / "output" / "judy-step00000500.safetensors"),
                          step=500, label="step 500", weight=1.0)
    assert main(["runs", str(sample_copy)]) == 0
    assert "★ best: judy-step00000500.safetensors" in capsys.readouterr().out

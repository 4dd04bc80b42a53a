"""SVG snapshots of the run screens on recorded run folders (regenerate: pytest tests/ui --snapshot-update).

Times are fixed (the recorded runs' T0, a monitor clock at T0+300 s, TZ=UTC), so the pictures do not
move with the wall clock.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from lora_tui.core import project, vram_check
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.monitor import MonitorScreen
from lora_tui.ui.screens.runs import RunsScreen
from lora_tui.ui.screens.train import TrainScreen
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from tests.ui import recorded_runs as rr
from tests.ui.settle import wait_until

SIZE = (160, 48)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _monitor_of(run_dir: Path):
    async def run_before(pilot) -> None:
        await pilot.pause()
        screen = MonitorScreen(run_dir, clock=lambda: rr.T0 + 300)
        pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.history_loaded, "the history")
        await wait_until(pilot, lambda: not screen.samples or screen.query_one(ImagePreview).shown is not None,
                         "the newest sample")
        await pilot.pause(0.1)
    return run_before


@pytest.mark.parametrize("kind", ["running", "finished", "crashed", "sd_scripts", "nan_stop"])
def test_monitor_screen(snap_compare, sample_copy: Path, kind: str) -> None:
    run_dir = getattr(rr, kind)(sample_copy)
    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=SIZE, run_before=_monitor_of(run_dir))


def test_runs_screen_lists_every_run_with_its_live_state(snap_compare, sample_copy: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in ("running", "finished", "crashed", "sd_scripts", "nan_stop"):
        getattr(rr, kind)(sample_copy)
    monkeypatch.setattr("time.time", lambda: rr.T0 + 300)  # durations of live runs

    async def run_before(pilot) -> None:
        await pilot.pause()
        screen = RunsScreen(pilot.app.project)
        pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.query_one("#runs").row_count == 5, "the runs")
        await pilot.pause(0.1)

    assert snap_compare(LoraTuiApp(project.load(sample_copy)), terminal_size=SIZE, run_before=run_before)


@pytest.fixture
def fixed_sample(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample project at a fixed path, the interpreter at a fixed name: the train screen shows both."""
    dest = Path("/tmp/lora-tui-snapshot/sample_project")
    shutil.rmtree(dest.parent, ignore_errors=True)
    shutil.copytree(Path(__file__).resolve().parents[2] / "sample_project", dest)
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: None)  # the VRAM estimate against the assumed card
    yield dest
    shutil.rmtree(dest.parent, ignore_errors=True)


def test_train_screen_shows_lint_steps_and_command(snap_compare, fixed_sample: Path) -> None:
    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TrainScreen)
                         and pilot.app.screen.preflight is not None, "the checks")
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # the focused field's cursor would blink into the picture or not
        await pilot.pause(0.1)

    assert snap_compare(LoraTuiApp(project.load(fixed_sample)), terminal_size=SIZE, run_before=run_before)

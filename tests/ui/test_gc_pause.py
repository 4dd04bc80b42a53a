"""The collector is held off while screens open, and always comes back."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest

from lora_tui.core import project
from lora_tui.ui import gc_pause
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.dataset import DatasetScreen


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_holds_nest_and_the_collector_resumes_after_the_last() -> None:
    first, second = gc_pause.Hold(), gc_pause.Hold()
    assert not gc.isenabled()
    first.release()
    first.release()  # idempotent: a second release does not end the other hold
    assert not gc.isenabled() and gc_pause.holding() == 1
    second.release()
    assert gc.isenabled() and gc_pause.holding() == 0


def test_a_hold_nobody_releases_ends_by_itself() -> None:
    gc_pause.Hold(max_s=0.05)
    assert not gc.isenabled()
    deadline = time.monotonic() + 5
    while not gc.isenabled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gc.isenabled() and gc_pause.holding() == 0


async def test_a_hold_made_in_the_event_loop_ends_by_itself_there_too() -> None:
    gc_pause.Hold(max_s=0.05)
    assert not gc.isenabled()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if gc.isenabled():
            break
    assert gc.isenabled() and gc_pause.holding() == 0


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    gc_pause.Hold().release()
    assert not gc.isenabled()


async def test_the_app_and_the_dataset_screen_leave_the_collector_on(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = DatasetScreen(app.project)
        await app.push_screen(screen)
        for _ in range(100):
            await pilot.pause(0.02)
            if gc.isenabled():
                break
        assert gc.isenabled() and gc_pause.holding() == 0
    assert gc.isenabled()

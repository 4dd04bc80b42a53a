"""Issue 15's "done when": open the app on the sample project, press t, then ctrl+s; the run builds
lora-tui:tiny-sd15 on first use and finishes with its loss in the monitor, nothing edited or downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import project
from lora_tui.runs import reader
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.monitor import MonitorScreen
from tests.ui.settle import wait_until
from tests.ui.test_run_e2e import _launch_from_train_screen

pytestmark = pytest.mark.slow


async def test_the_sample_project_trains_from_the_train_key(sample_copy: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))  # first use: the run builds the model
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        monitor = await _launch_from_train_screen(pilot)
        assert isinstance(monitor, MonitorScreen)
        await wait_until(pilot, lambda: monitor.info is not None and monitor.info.state == "finished",
                         "the run's end", tries=12000)
        await wait_until(pilot, lambda: len(monitor.series.loss.raw.points()[0]) >= 40, "the loss", tries=500)
    assert reader.read_run(monitor.run_dir).state == "finished"
    assert (monitor.run_dir / "output" / "sample.safetensors").is_file()

"""The monitor screen on recorded run folders, driven with Pilot (real keys)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from lora_tui.core import project
from lora_tui.runs import contract
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.monitor import MonitorScreen
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from lora_tui.ui.widgets.run.panel import TextPanel
from lora_tui.ui.widgets.run.plots import GpuPlot
from tests.ui import recorded_runs as rr
from tests.ui.settle import wait_until


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


async def open_monitor(pilot, run_dir: Path, now: float = rr.T0 + 300) -> MonitorScreen:
    """The monitor pushed over the overview, once its history has landed and its files are listed."""
    await pilot.pause()
    screen = MonitorScreen(run_dir, clock=lambda: now)
    pilot.app.push_screen(screen)
    await wait_until(pilot, lambda: screen.history_loaded, "the loss history")
    await wait_until(pilot, lambda: not screen.samples or screen.query_one(ImagePreview).shown is not None,
                     "the newest sample image")
    await pilot.pause(0.05)
    return screen


def head(screen: MonitorScreen) -> str:
    return screen.query_one("#run-head", TextPanel).text.plain


async def test_a_finished_run_shows_its_loss_from_the_first_step(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        xs, _ = screen.series.loss.raw.points()
        assert xs[0] <= 2 and xs[-1] == 400
        assert "finished" in head(screen) and "step 400/400" in head(screen) and "epoch 4/4" in head(screen)
        assert len(screen.series.lr.groups) == 2  # unet and text_encoder, each its own line


async def test_checkpoints_and_samples_are_listed_newest_first_with_prompts(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        checkpoints = screen.query_one("#checkpoints", DataTable)
        assert checkpoints.row_count == 3
        samples = screen.query_one("#samples", DataTable)
        assert [str(samples.get_row_at(i)[0]) for i in range(samples.row_count)] == ["400", "200"]
        assert str(samples.get_row_at(0)[2]) == "sks woman, [red] scarf, portrait"  # not markup
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: screen.query_one(ImagePreview).shown == screen.samples[1].path,
                         "the older sample")


async def test_a_dead_run_reads_crashed_and_its_traceback_is_red(sample_copy: Path) -> None:
    run_dir = rr.crashed(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        assert head(screen).startswith("crashed") and "RuntimeError: CUDA error" in head(screen)
        log = screen.query_one("#log", TextPanel).text
        red = [log.plain[s.start:s.end] for s in log.spans if "red" in str(s.style)]
        assert any("Traceback" in r for r in red) and any(r.startswith("RuntimeError") for r in red)


async def test_no_gpu_is_said_plainly(sample_copy: Path) -> None:
    run_dir = rr.crashed(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        assert screen.query_one("#gpu-text", TextPanel).text.plain.startswith("no GPU")
        assert not screen.query_one(GpuPlot).display


async def test_gpu_panel_shows_memory_the_runs_share_and_its_peak(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        text = screen.query_one("#gpu-text", TextPanel).text.plain
        assert "/ 24.0 GB" in text and "this run's processes" in text and "run peak 9.2 GB" in text
        assert len(screen.series.gpu.used) == 8


async def test_a_nan_stop_reads_failed_with_its_reason(sample_copy: Path) -> None:
    run_dir = rr.nan_stop(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        assert head(screen).startswith("failed") and "loss is NaN at step 88" in head(screen)
        assert screen.series.loss.raw.points()[0][-1] == 87  # NaN losses are not plotted


async def test_new_steps_of_a_running_run_appear_without_reopening(sample_copy: Path) -> None:
    run_dir = rr.running(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        assert "running" in head(screen) and "ETA" in head(screen)
        with open(run_dir / contract.EVENTS, "a") as f:
            for step in range(121, 131):
                f.write(json.dumps({"t": rr.T0 + step / 2, "kind": "step", "step": step, "loss": 0.25,
                                    "lr": {"unet": 1e-4}}) + "\n")
        await wait_until(pilot, lambda: "step 130/400" in head(screen), "the new steps", tries=400)
        assert screen.series.loss.raw.points()[0][-1] == 130


async def test_copy_output_path_uses_the_clipboard_escape(sample_copy: Path) -> None:
    run_dir = rr.finished(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        await open_monitor(pilot, run_dir)
        await pilot.press("y")
        assert app.clipboard == str(run_dir / "output")


async def test_stop_now_asks_first_and_no_leaves_the_run_alone(sample_copy: Path) -> None:
    run_dir = rr.running(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        await open_monitor(pilot, run_dir)
        await pilot.press("x")
        await pilot.pause()
        assert type(app.screen).__name__ == "Confirm"
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, MonitorScreen)
        assert not (run_dir / contract.STOP_REQUEST).exists()


def _long_run_with_gpu(root: Path, steps: int = 3000) -> Path:
    """A finished run with a GPU sample every 100 steps, among the step lines as a trainer writes them."""
    run_dir = rr.big_finished(root, steps)
    lines = (run_dir / contract.EVENTS).read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        event = json.loads(line)
        if event.get("kind") == "step" and event["step"] % 100 == 0:
            out.append(json.dumps({"t": event["t"], "kind": "gpu", "index": 0, "used_mb": 1000.0 + event["step"],
                                   "total_mb": 24000.0}) + "\n")
    (run_dir / contract.EVENTS).write_text("".join(out))
    return run_dir


def test_gpu_history_covers_the_whole_run_whether_read_whole_or_probed(tmp_path: Path) -> None:
    from lora_tui.ui.widgets.run.history import gpu_history

    run_dir = _long_run_with_gpu(tmp_path)
    whole = gpu_history(run_dir)
    probed = gpu_history(run_dir, max_points=10, read_whole_below=0)
    assert [e["used_mb"] for e in whole] == [1000.0 + s for s in range(100, 3001, 100)]
    assert 5 <= len(probed) <= 10 and [e["t"] for e in probed] == sorted(e["t"] for e in probed)
    assert gpu_history(run_dir, before=rr.T0 + 1000 * 0.05)[-1]["used_mb"] == 1900.0


async def test_the_gpu_timeline_starts_at_the_runs_first_sample_not_at_the_tail(sample_copy: Path) -> None:
    run_dir = _long_run_with_gpu(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        xs, ys = screen.series.gpu.used.points()
        assert len(xs) == 30 and xs[0] == 0 and ys[0] == 1100.0 / 1024


async def test_a_damaged_run_folder_opens_and_says_what_is_wrong(sample_copy: Path) -> None:
    run_dir = sample_copy / "runs" / "20270101-000000-broken"
    run_dir.mkdir(parents=True)
    (run_dir / "run.toml").write_text("[run]\n", "utf-8")
    (run_dir / contract.STATUS).write_text("{not json", "utf-8")
    (run_dir / contract.EVENTS).write_bytes(b'\x00\xff garbage\n{"kind": "step", "step": "x"}\n[1, 2]\n')
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        assert head(screen).startswith("unknown") and "status.json" in head(screen)
        assert screen.series.loss.raw.points() == ([], [])


async def test_an_sd_scripts_run_plots_its_average_loss_as_sd_scripts_reports_no_per_step_loss(
        sample_copy: Path) -> None:
    run_dir = rr.sd_scripts(sample_copy)
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_monitor(pilot, run_dir)
        xs, _ = screen.series.loss.raw.points()
        assert xs == [1, 2, 3, 4, 5, 6] and screen.series.loss.average_only
        assert "finished" in head(screen) and "step 6/6" in head(screen) and "avg loss" in head(screen)
        assert screen.query_one("#checkpoints", DataTable).row_count == 0  # its output is not in this folder

"""Monitor: one run, live or ended, however it was started (this app, the CLI, a queue, yesterday).

The screen reads the run folder only (the run contract); it owns no process. On open it shows the
run's last figures at once (a bounded tail of events.jsonl), then the loss history from the start
lands from a worker (sampled: bounded work on a million-line file). After that a timer reads only
the new lines, when watchdog says the folder changed or every few seconds regardless, and redraws
from bounded series: the cost of watching does not grow with the run's speed or length.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Static

from lora_tui.core.errors import LoraTuiError
from lora_tui.runs import contract, reader
from lora_tui.runs.follow import RunMonitor
from lora_tui.runs.logtail import read_tail
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.run import artifacts, texts
from lora_tui.ui.widgets.run.confirm import Confirm
from lora_tui.ui.widgets.run.follow import ChangeFlag
from lora_tui.ui.widgets.run.history import gpu_history
from lora_tui.ui.widgets.run.panel import TextPanel
from lora_tui.ui.widgets.run.plots import GpuPlot, LossPlot, LrPlot
from lora_tui.ui.widgets.run.series import RunSeries

TICK_S = 1.0          # read new lines and repaint the header this often
PLOT_EVERY_S = 5.0    # redraw the loss and GPU plots at most this often (only when their data moved)
LR_EVERY_S = 15.0     # the lr plot (schedules move slowly; a plotext redraw costs ~15-30 ms, see bench)
FILES_EVERY_S = 10.0  # list output/, state/ and samples/ again (sooner after a save or sample event)
LOG_BYTES = 16384


def _active(screen: Any) -> bool:
    return screen.info is not None and screen.info.active


def _ended(screen: Any) -> bool:
    return screen.info is not None and not screen.info.active


class MonitorScreen(ActionScreen):
    BINDING_GROUP_TITLE = "Monitor"
    ACTIONS = Actions("monitor", "Run monitor", group="run", intro=(
        "State, progress, ETA, loss (raw and EMA), learning rate per group, GPU memory, checkpoints, sample "
        "images and the end of train.log of one run. Leaving or quitting never touches the run."), actions=(
        Action("monitor.stop", "s", "Stop", "stop", title="Stop after the current step (saves first)",
               tooltip="Stop after the current step (the built-in trainer saves first)", when=_active),
        Action("monitor.stop_now", "x", "Stop now", "stop_now", title="Stop at once (asks first)", when=_active),
        Action("monitor.resume", "u", "Resume", "resume", title="Resume from the newest saved state (a new run)",
               when=_ended),
        Action("monitor.open", "o", "Open output", "open_output", title="Show (or open) the output folder"),
        Action("monitor.copy", "y", "Copy path", "copy_output", title="Copy the output folder path (OSC 52)"),
        Action("monitor.grid", "g", "Grid", "grid", show=False,  # F1 and the palette; the footer is full
               title="Open the checkpoint grid (lora-tui grid RUN)"),
        Action("monitor.sample_newer", "left_square_bracket", "Newer sample", "sample(-1)", show=False,
               title="Show the newer sample image"),
        Action("monitor.sample_older", "right_square_bracket", "Older sample", "sample(1)", show=False,
               title="Show the older sample image"),
        Action("monitor.back", "escape", "Back", "dismiss", title="Back", palette=False),
    ))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    MonitorScreen #run-head { height: 4; padding: 0 1; background: $boost; }
    MonitorScreen #body { height: 1fr; }
    MonitorScreen #left { width: 3fr; }
    MonitorScreen #right { width: 2fr; padding: 0 0 0 1; }
    MonitorScreen #gpu-text { height: 4; }
    MonitorScreen .caption { color: $primary; text-style: bold; }
    MonitorScreen #checkpoints { height: 6; }
    MonitorScreen #samples { height: 4; }
    MonitorScreen #sample-prompt { height: auto; max-height: 2; color: $text-muted; }
    MonitorScreen ImagePreview { height: 1fr; min-height: 4; }
    MonitorScreen #log { height: 9; border-top: solid $primary; padding: 0 1; }
    """

    def __init__(self, run_dir: Path, *, clock: Any = time.time) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.clock = clock
        self.monitor: RunMonitor | None = None
        self.series = RunSeries()
        self.history_loaded = False
        self._early: deque[dict[str, Any]] = deque(maxlen=5000)  # events that land before the history
        self.flag = ChangeFlag(self.run_dir)
        self._plotted_at = 0.0
        self._lr_at = 0.0
        self._files_at = 0.0
        self._files_dirty = True
        self._log_size = -1
        self._sample_events: deque[dict[str, Any]] = deque(maxlen=200)
        self.samples: list[artifacts.Sample] = []
        self.checkpoints: list[artifacts.Checkpoint] = []
        self._stop_sent = False

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield TextPanel("reading the run…", id="run-head")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield LossPlot(self.series.loss, id="loss-plot")
                yield LrPlot(self.series.lr, id="lr-plot")
            with Vertical(id="right"):
                yield TextPanel("", id="gpu-text")
                yield GpuPlot(self.series.gpu, id="gpu-plot")
                yield Static("checkpoints", classes="caption")
                yield DataTable(id="checkpoints", cursor_type="row", zebra_stripes=True)
                yield Static("samples (newest first)", classes="caption")
                yield DataTable(id="samples", cursor_type="row")
                yield Static("", id="sample-prompt", markup=False)
                yield ImagePreview(id="sample-preview")
        yield TextPanel("", id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run_dir.name
        self.query_one("#checkpoints", DataTable).add_columns("step", "kind", "size", "file")
        self.query_one("#samples", DataTable).add_columns("step", "image", "prompt")
        try:
            self.monitor = RunMonitor(self.run_dir)
        except OSError as exc:
            self.notify(f"cannot read {self.run_dir}: {exc}", severity="error", markup=False)
            return
        for event in self.monitor.info.events:
            self._note(event)
        self._show_header()
        self._show_gpu()
        self.flag.start()
        self._load_history()
        self._tick_timer = self.set_interval(TICK_S, self._tick)
        self.call_after_refresh(self._refresh_files)
        self.call_after_refresh(self._refresh_log)

    def on_unmount(self) -> None:
        self.flag.stop()

    # -- reading ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def _load_history(self) -> None:
        points = reader.loss_history(self.run_dir, 2000)
        tail = self.monitor.info.events if self.monitor is not None else []
        first = next((e.get("t") for e in tail if isinstance(e.get("t"), (int, float))), None)
        sampled = any(e.get("kind") == "gpu" and "used_mb" in e for e in tail)
        # the timeline before the tail read on open (a run with no GPU samples lately had none before)
        gpu = gpu_history(self.run_dir, before=first) if sampled else []
        self.app.call_from_thread(self._history_loaded, points, gpu)

    def _history_loaded(self, points: list[dict[str, Any]], gpu: list[dict[str, Any]]) -> None:
        if not self.is_mounted:  # left before the worker finished
            return
        self.series.add_history(points)
        for event in gpu:
            self.series.add(event)
        if self.monitor is not None:
            for event in self.monitor.info.events:  # the tail read on open: GPU samples, the newest steps
                self.series.add(event)
        for event in self._early:
            self.series.add(event)
        self._early.clear()
        self.history_loaded = True
        self._draw_plots(force=True)

    def _note(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "sample":
            self._sample_events.append(event)
            self._files_dirty = True
        elif kind == "save":
            self._files_dirty = True

    def _tick(self) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        if self.flag.due():
            new = monitor.poll()
            self.flag.read_result(bool(new))
            for event in new:
                self._note(event)
                if self.history_loaded:
                    self.series.add(event)
                else:
                    self._early.append(event)
        self._show_header()
        now = time.monotonic()
        if now - self._plotted_at >= PLOT_EVERY_S:
            self._draw_plots()
            self._show_gpu()
        self._refresh_log()
        if self._files_dirty or now - self._files_at >= FILES_EVERY_S:
            self._refresh_files()

    # -- drawing ----------------------------------------------------------------------------------
    def _show_header(self) -> None:
        if self.monitor is not None:
            self.query_one("#run-head", TextPanel).set(texts.header_text(self.monitor.info, self.clock()))

    def _show_gpu(self) -> None:
        if self.monitor is not None:
            info = self.monitor.info
            self.query_one("#gpu-text", TextPanel).set(texts.gpu_text(info))
            self.query_one(GpuPlot).display = bool(info.gpus) or len(self.series.gpu.used) > 0

    def _draw_plots(self, force: bool = False) -> None:
        self._plotted_at = time.monotonic()
        if not self.history_loaded:
            return
        self.query_one(LossPlot).draw(self.series.loss.version, force)
        if force or time.monotonic() - self._lr_at >= LR_EVERY_S:
            self._lr_at = time.monotonic()
            self.query_one(LrPlot).draw(self.series.lr.version, force)
        gpu = self.query_one(GpuPlot)
        if self.monitor is not None and self.monitor.info.gpus:
            totals = [g.get("total_mb") for g in self.monitor.info.gpus.values() if g.get("total_mb")]
            gpu.total_gb = max(totals) / 1024 if totals else None
        gpu.draw(self.series.gpu.version, force)

    def _refresh_log(self) -> None:
        path = self.run_dir / contract.LOG
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size == self._log_size:
            return
        self._log_size = size
        log = self.query_one("#log", TextPanel)
        log.set(texts.log_text(read_tail(path, LOG_BYTES), log.size.height or 8))

    def _refresh_files(self) -> None:
        self._files_at, self._files_dirty = time.monotonic(), False
        saves = self.monitor.info.saves if self.monitor is not None else []
        found = artifacts.checkpoints(self.run_dir, saves)
        if found != self.checkpoints:
            self.checkpoints = found
            table = self.query_one("#checkpoints", DataTable)
            table.clear()
            for c in found:
                table.add_row("" if c.step is None else str(c.step), c.kind, artifacts.fmt_size(c.size),
                              Text(c.path.name))
        found_samples = artifacts.samples(self.run_dir, list(self._sample_events))
        if found_samples != self.samples:
            self.samples = found_samples
            table = self.query_one("#samples", DataTable)
            table.clear()
            for s in found_samples:
                table.add_row("" if s.step is None else str(s.step), Text(s.path.name), Text(s.prompt))
            if found_samples:
                table.move_cursor(row=0)
                self._show_sample(0)

    def _show_sample(self, row: int) -> None:
        if not 0 <= row < len(self.samples):
            return
        sample = self.samples[row]
        self.query_one("#sample-prompt", Static).update(sample.prompt or sample.path.name)
        self.query_one(ImagePreview).show(sample.path)

    @on(DataTable.RowHighlighted, "#samples")
    def _sample_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_sample(event.cursor_row)

    # -- actions ----------------------------------------------------------------------------------
    @property
    def info(self) -> reader.RunInfo | None:
        return self.monitor.info if self.monitor is not None else None

    def action_sample(self, delta: int) -> None:
        table = self.query_one("#samples", DataTable)
        if self.samples:
            table.move_cursor(row=max(0, min(len(self.samples) - 1, table.cursor_row + delta)))

    def action_stop(self) -> None:
        self._stop(now=False)

    def action_stop_now(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._stop(now=True)

        self.app.push_screen(Confirm(f"Stop {self.run_dir.name} at once?",
                                     "The trainer is killed without saving: steps since the last save are lost."),
                             answered)

    @work(thread=True, group="control", exit_on_error=False)
    def _stop(self, now: bool) -> None:
        from lora_tui.runs.control import stop_run

        try:
            line = stop_run(self.run_dir, now=now, by="the lora-tui app")
            severity = "information"
        except LoraTuiError as exc:
            line, severity = str(exc), "error"
        self.flag.trigger()
        self.app.call_from_thread(self.notify, line, severity=severity, markup=False)

    @work(thread=True, group="control", exit_on_error=False)
    def action_resume(self) -> None:
        from lora_tui.ui.launcher import resume

        try:
            run_dir, line = resume(self.run_dir)
        except LoraTuiError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False, timeout=10)
            return
        self.app.call_from_thread(self._resumed, run_dir, line)

    def _resumed(self, run_dir: Path, line: str) -> None:
        self.notify(line, markup=False)
        self.app.switch_screen(MonitorScreen(run_dir))

    def _output_dir(self) -> Path:
        info = self.info
        if info is not None and info.output:
            return Path(info.output).parent
        return self.run_dir / "output"

    def action_open_output(self) -> None:
        """A desktop session gets a file manager; over SSH the path is the useful answer."""
        folder = self._output_dir()
        opener = shutil.which("xdg-open") or shutil.which("open")
        if opener and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and folder.is_dir():
            with contextlib.suppress(OSError):
                subprocess.Popen([opener, str(folder)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        self.notify(f"output folder: {folder}", markup=False, timeout=10)

    def action_copy_output(self) -> None:
        folder = self._output_dir()
        self.app.copy_to_clipboard(str(folder))  # OSC 52: reaches the local clipboard over SSH
        self.notify(f"copied {folder}", markup=False)

    def action_grid(self) -> None:
        from lora_tui.ui.screens.grid import GridScreen

        self.app.push_screen(GridScreen(self.run_dir))

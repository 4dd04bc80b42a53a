"""Project overview: subsets, steps math and lint findings at a glance."""

from __future__ import annotations

import contextlib
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import Header, Static
from textual.worker import get_current_worker

from lora_tui.core import configs, lint, model_family, scan, steps
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.core.review import ReviewMarks
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.messages import ProjectAnalysed
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.project.findings import FindingsTable
from lora_tui.ui.widgets.project.subsets import SubsetTable
from lora_tui.ui.widgets.run.latest import LatestRuns
from lora_tui.ui.widgets.run.table import RunsTable

STARTUP_DELAY = 0.4  # seconds before the first analysis


class OverviewScreen(ActionScreen):
    """Everything `lora-tui check` and `lora-tui steps` say, kept fresh by a background worker."""

    BINDING_GROUP_TITLE = "Project"
    ACTIONS = Actions("project", "Project overview", group="project", intro=(
        "The subsets sd-scripts will see, the exact steps math and every lint finding."), actions=(
        Action("project.rescan", "r", "Rescan", "rescan", title="Rescan images and captions",
               tooltip="Scan images and captions again"),
        Action("project.write_configs", "c", "Write configs", "write_configs",
               title="Write configs for sd-scripts", tooltip="Write configs/ for sd-scripts"),
        Action("project.dataset", "d", "Dataset", "dataset", title="Open the dataset screen",
               tooltip="Browse images and edit captions"),
        Action("project.config", "p", "Config", "config", title="Open the config screen",
               tooltip="Edit the project settings"),
        # -- runs (issue 11): the train screen, the runs list; the latest runs are shown on this screen --
        Action("project.train", "t", "Train", "train", title="Open the train screen (launch a run)",
               tooltip="Check, then launch or queue a training run"),
        Action("project.runs", "l", "Runs", "runs", title="Open the runs list and the queue",
               tooltip="Every run with its live state; the queue"),
    ), notes=("**enter** on one of the latest runs opens its monitor",
              "**ctrl+p** command palette · **f1** this help · **q** quit"))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    OverviewScreen Vertical { padding: 0 1; }
    OverviewScreen .section { color: $primary; text-style: bold; margin-top: 1; }
    OverviewScreen #steps { height: auto; }
    """

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project
        self.steps: steps.StepsReport | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("Latest runs", classes="section")
            yield LatestRuns(self.project.root, id="latest")
            yield Static("Subsets", classes="section")
            yield SubsetTable(id="subsets")
            yield Static("Steps", classes="section")
            yield Static("scanning…", id="steps", markup=False)
            yield Static("Lint", classes="section")
            yield FindingsTable(id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.project.root.name
        self.query_one("#steps", Static).update("scanning…")
        # Start after the first frames: a quick "d" to the dataset screen then gets the CPU to itself.
        self._first_scan = self.set_timer(STARTUP_DELAY, self.action_rescan)

    def action_rescan(self) -> None:
        self.query_one("#steps", Static).update("scanning…")
        self.analyse()

    @work(thread=True, exclusive=True, group="analyse", exit_on_error=False)
    def analyse(self, scans: list[scan.SubsetScan] | None = None) -> None:
        """Steps and lint from ``scans`` (the dataset screen's, kept current file by file) or a new scan."""
        worker = get_current_worker()
        try:
            family = model_family.family_or_none(self.project.model_path)  # a header read, cached
            self.app.call_from_thread(self._show_family, family)
            if scans is None:
                scans = scan.scan_project(self.project)
            if worker.is_cancelled:
                return
            report = steps.compute(self.project, scans)
            self.post_message(ProjectAnalysed(scans, report, None))
            findings = lint.check_project(self.project, scans=scans, should_stop=lambda: worker.is_cancelled)
            self.post_message(ProjectAnalysed(scans, report, findings))
        except lint.LintCancelled:
            return  # another screen took over; the analysis reruns when this one is back
        except LoraTuiError as exc:
            self.post_message(ProjectAnalysed([], None, None, str(exc)))

    def _show_family(self, family: str | None) -> None:
        """The base model's family (SD1.x, SD2.x, SD2.x-v, SDXL) beside the project name."""
        name = self.project.root.name
        self.sub_title = f"{name} · {model_family.LABELS[family]} model" if family in model_family.LABELS else name

    def on_screen_suspend(self) -> None:
        """Leave the CPU to the screen on top (lint of 10,000 images is not free)."""
        self._first_scan.stop()
        self.workers.cancel_group(self, "analyse")
        self.query_one(LatestRuns).pause()

    def on_screen_resume(self) -> None:
        with contextlib.suppress(NoMatches):
            self.query_one(LatestRuns).resume()
        saved = getattr(self.app, "project", None)
        if saved is not None and saved is not self.project:  # the train screen saved the project file
            self._project_changed(saved)

    @on(ProjectAnalysed)
    def show_analysis(self, message: ProjectAnalysed) -> None:
        if message.error:
            self.notify(message.error, severity="error", markup=False)
            return
        self.query_one(SubsetTable).show(message.scans, ReviewMarks(self.project.root))
        self.steps = message.steps
        if message.steps is not None:
            self.query_one("#steps", Static).update(
                message.steps.breakdown() + "\n\n" + message.steps.summary_line())
        if message.lint is not None:
            self.query_one(FindingsTable).show(message.lint)
            errors, warnings = len(message.lint.errors), len(message.lint.warnings)
            self.title = f"lora-tui · {self.project.name} · {errors} errors, {warnings} warnings"

    @on(FindingsTable.Picked)
    def _jump(self, message: FindingsTable.Picked) -> None:
        """Enter on a finding opens the dataset screen at its image (or its subset's folder)."""
        if message.finding.path:
            self.action_dataset(Path(message.finding.path))

    def action_dataset(self, focus: Path | None = None) -> None:
        from lora_tui.ui.screens.dataset import DatasetScreen

        try:
            screen = DatasetScreen(self.project, focus=focus)
        except LoraTuiError as exc:  # e.g. a caption journal that cannot be read
            self.notify(str(exc), severity="error", markup=False, timeout=10)
            return
        self.app.push_screen(screen, callback=self._dataset_closed)

    def _dataset_closed(self, scans: list[scan.SubsetScan] | None) -> None:
        """The dataset screen hands back its scans when they are complete: no second full scan."""
        self.query_one("#steps", Static).update("scanning…")
        self.analyse(scans)

    def action_config(self) -> None:
        from lora_tui.ui.screens.config import ConfigScreen

        self.app.push_screen(ConfigScreen(self.project), callback=self._project_changed)

    def _project_changed(self, saved: Project | None) -> None:
        """The config screen dismisses with the project it saved (None: nothing saved)."""
        if saved is None:
            return
        self.project = saved
        self.app.project = saved  # screens opened from now on start from it
        self.action_rescan()

    # -- runs (issue 11) ------------------------------------------------------------------------
    def action_train(self) -> None:
        from lora_tui.ui.screens.train import TrainScreen

        self.app.push_screen(TrainScreen(self.project))

    def action_runs(self) -> None:
        from lora_tui.ui.screens.runs import RunsScreen

        self.app.push_screen(RunsScreen(self.project))

    @on(RunsTable.Open)
    def _open_run(self, message: RunsTable.Open) -> None:
        from lora_tui.ui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(message.info.dir))

    def action_write_configs(self) -> None:
        try:
            generated = configs.write(self.project, self.steps)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"wrote {generated.dataset_config.name} and {generated.args_config.name}", markup=False)

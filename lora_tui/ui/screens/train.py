"""Train: pick the backend, check, see the steps and the command, then launch or queue a run.

The form edits the project file (the same ``project.update`` as the config screen: validated,
comments kept). Lint errors block a launch; warnings ask first. The launch itself (run folder,
detached supervisor, or the queue) runs in a worker thread, so the screen never freezes, and the
run belongs to its supervisor: closing the app leaves it training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Input, Label, Select, Static

from lora_tui.core import configs, project
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.ui import launcher
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.screens.config import parse_value
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.path_suggester import model_suggester
from lora_tui.ui.widgets.run.confirm import Confirm

BACKENDS = ("builtin", "sd-scripts")
# The parameters people change between runs; everything else is on the config screen.
KEY_PARAMS = ("max_train_epochs", "max_train_steps", "learning_rate", "network_dim", "network_alpha",
              "save_every_n_epochs", "sample_every_n_steps", "output_name")
MODEL_KEY = "pretrained_model_name_or_path"


def trainer_command(proj: Project) -> str:
    """The trainer's command line as the run will get it (its config files live in the run folder)."""
    from lora_tui.core import train_args
    from lora_tui.runs import backends

    run_dir = proj.root / "runs" / "<run-id>"
    try:
        configs.build(proj)  # validates the configs the run will be given
        argv, _ = backends.get(proj.backend).command(proj, run_dir / "dataset.toml", run_dir / "args.toml", run_dir)
    except (LoraTuiError, OSError, ValueError) as exc:
        return f"(no command yet: {exc})"
    return train_args.shell_join(argv)


class TrainScreen(ActionScreen):
    BINDING_GROUP_TITLE = "Train"
    ACTIONS = Actions("train", "Train", group="train", intro=(
        "Backend, base model and the key parameters (saved to lora-tui.toml on enter), the lint findings "
        "(errors block the launch, warnings ask first), the steps math and the exact command."), actions=(
        Action("train.launch", "ctrl+s", "Launch", "launch", priority=True,
               title="Launch the run (detached: it outlives the app)"),
        Action("train.queue", "ctrl+e", "Queue", "enqueue", priority=True, title="Add the run to the project's queue"),
        Action("train.back", "escape", "Back", "dismiss", title="Back", palette=False),
    ), notes=("**tab / shift+tab** move between fields · **enter** save the field",))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    TrainScreen #form { width: 55%; padding: 0 1; }
    TrainScreen .row { height: 3; }
    TrainScreen .row Label { width: 30; padding: 1 1 0 0; }
    TrainScreen .row Input, TrainScreen .row Select { width: 1fr; }
    TrainScreen .section { color: $primary; text-style: bold; margin-top: 1; }
    TrainScreen #side { padding: 0 1; }
    TrainScreen #launch-state { margin-top: 1; }
    """

    def __init__(self, proj: Project) -> None:
        super().__init__()
        self.project = proj
        self.preflight: launcher.Preflight | None = None
        self.launching = False
        self.launched: Path | None = None

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="form"):
                yield Label("run", classes="section")
                with Horizontal(classes="row"):
                    yield Label("backend")
                    yield Select([(b, b) for b in BACKENDS], value=self.project.backend, allow_blank=False,
                                 id="backend")
                with Horizontal(classes="row"):
                    yield Label("base model")
                    yield Input(str(self.project.doc.get("model", {}).get(MODEL_KEY, "") or ""), id="model",
                                placeholder=".safetensors/.ckpt file or Diffusers folder (→ completes)",
                                suggester=model_suggester(self.project.root))
                yield Label("key parameters (empty: the default)", classes="section")
                for key in KEY_PARAMS:
                    with Horizontal(classes="row"):
                        yield Label(key)
                        value = self.project.training.get(key)
                        yield Input("" if value is None else str(value), id=f"p-{key}", placeholder="(default)")
                yield Static("", id="launch-state", markup=False)
            with VerticalScroll(id="side"):
                yield Static("Lint", classes="section")
                yield Static("checking…", id="lint")
                yield Static("Steps", classes="section")
                yield Static("", id="steps", markup=False)
                yield Static("Command", classes="section")
                yield Static("", id="command", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"lora-tui · {self.project.name}"
        self.sub_title = "train"
        # the field most likely to need typing first: the base model while none is set
        self.query_one("#model" if not self.query_one("#model", Input).value else "#p-max_train_epochs").focus()
        self.check()

    # -- editing ----------------------------------------------------------------------------------
    def _save(self, where: tuple[str | int, ...], key: str, value: Any) -> None:
        try:
            self.project = project.update(self.project, where, key, value)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False, timeout=8)
            return
        self.app.project = self.project  # type: ignore[attr-defined]
        self.notify(f"saved {key}", timeout=2, markup=False)
        self.check()

    @on(Input.Submitted)
    def _input(self, event: Input.Submitted) -> None:
        ident = event.input.id or ""
        if ident == "model":
            self._save(("model",), MODEL_KEY, event.value.strip() or None)
        elif ident.startswith("p-"):
            key = ident[2:]
            try:
                value = parse_value(key, event.value)
            except LoraTuiError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self._save(("training",), key, value)

    @on(Select.Changed, "#backend")
    def _backend(self, event: Select.Changed) -> None:
        if event.value != self.project.backend and event.value in BACKENDS:
            self._save(("project",), "backend", event.value)

    # -- checking ---------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.project.backend

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def check(self) -> None:
        proj = self.project
        result = launcher.preflight(proj, backend=proj.backend)
        command = trainer_command(proj)
        self.app.call_from_thread(self._checked, result, command)

    def _checked(self, result: launcher.Preflight, command: str) -> None:
        if not self.is_mounted:  # left before the checks finished
            return
        self.preflight = result
        lint = Text()
        if result.problem:
            lint.append(f"✗ {result.problem}\n", style="bold red")
        for finding in result.errors:
            lint.append(f"✗ {finding.line()}\n", style="red")
        for finding in result.warnings:
            lint.append(f"! {finding.line()}\n", style="yellow")
        if result.excluded:
            lint.append(f"left out: {result.excluded} image(s) marked excluded\n", style="dim")
        if not lint.plain:
            lint.append("no errors, no warnings", style="green")
        self.query_one("#lint", Static).update(lint)
        steps = result.steps
        self.query_one("#steps", Static).update(steps.breakdown() + "\n\n" + steps.summary_line() if steps else "")
        self.query_one("#command", Static).update(
            f"{launcher.command_line(self.project, self.backend)}\n\nthe run's supervisor starts:\n{command}")
        self._show_state()

    def _show_state(self, line: str | None = None) -> None:
        result = self.preflight
        if line is None:
            if result is None:
                line = "checking…"
            elif result.blocked:
                line = "launch blocked: fix the errors on the right"
            elif result.warnings:
                line = f"ready: ctrl+s launches (asks first: {len(result.warnings)} warning(s)), ctrl+e queues"
            else:
                line = "ready: ctrl+s launches, ctrl+e queues"
        self.query_one("#launch-state", Static).update(line)

    # -- launching --------------------------------------------------------------------------------
    def action_launch(self) -> None:
        self._start(queue=False)

    def action_enqueue(self) -> None:
        self._start(queue=True)

    def _start(self, queue: bool) -> None:
        if self.launching:
            self.notify("a launch is already under way", markup=False)
            return
        result = self.preflight
        if result is None:
            self.notify("still checking the project; try again in a moment", markup=False)
            return
        if result.blocked:
            first = result.problem or (result.errors[0].line() if result.errors else "")
            self.notify(f"cannot launch: {first}", severity="error", markup=False, timeout=10)
            return
        if result.warnings:
            body = "\n".join(f.line() for f in result.warnings[:8])

            def answered(yes: bool | None) -> None:
                if yes:
                    self._launch(queue)

            self.app.push_screen(Confirm(f"{len(result.warnings)} warning(s): launch anyway?", body), answered)
            return
        self._launch(queue)

    def _launch(self, queue: bool) -> None:
        self.launching = True
        self._show_state("launching…" if not queue else "queueing…")
        self._launch_worker(queue)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch_worker(self, queue: bool) -> None:
        proj = self.project
        try:
            result = launcher.preflight(proj, backend=proj.backend)  # the files may have changed meanwhile
            if result.blocked:
                raise LoraTuiError(result.problem or result.errors[0].line())
            run_dir, line = launcher.launch(proj, backend=proj.backend, queue=queue, scans=result.scans)
        except LoraTuiError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # the UI must survive any failure of a launch; say what it was
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._launched, run_dir, line, queue)

    def _failed(self, line: str) -> None:
        self.launching = False
        if not self.is_mounted:
            self.app.notify(line, severity="error", markup=False, timeout=15)
            return
        self._show_state(f"not launched: {line}")
        self.notify(line, severity="error", markup=False, timeout=15)

    def _launched(self, run_dir: Path, line: str, queue: bool) -> None:
        from lora_tui.ui.screens.monitor import MonitorScreen

        self.launching = False
        self.launched = run_dir
        self.app.notify(line, markup=False, timeout=8)
        if not self.is_mounted:  # the user left while it launched: the run goes on, the toast says so
            return
        self._show_state(line)
        if not queue and self.app.screen is self:  # the monitor takes the train screen's place
            self.app.switch_screen(MonitorScreen(run_dir))

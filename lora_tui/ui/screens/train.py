"""Train: pick the backend, check, see the steps, the VRAM estimate and the command, then launch or queue.

The form edits the project file (the same ``project.update`` as the config screen: validated,
comments kept). Lint errors block a launch; warnings ask first, and so does a VRAM estimate above the
card's free memory (an estimate never blocks). The estimate follows what is typed (debounced, on a
copy of the project, in a worker: it reads the model's header and NVML). The launch itself (run folder,
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
from textual.widgets import Header, Input, Label, Select, Static, Switch

from lora_tui.core import configs, project
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.ui import launcher
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.screens import train_vram as tv
from lora_tui.ui.screens.config import PREVIEW_DELAY
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
        "(errors block the launch, warnings ask first), the steps math, the estimated peak VRAM against the "
        "card's free memory (above it, a launch asks first) and the exact command."), actions=(
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
    TrainScreen .row Switch { width: auto; }
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
        self.vram: tv.Assessment | None = None  # the saved settings' estimate: a launch asks when it is over
        self.drafts: dict[str, str] = {}  # input id → text typed and not saved yet (the estimate follows it)
        self._vram_timer: Any = None
        self._vram_shown = 0  # which estimate the panel waits for (a late, older one is not shown)
        self._vram_note: str | None = None  # why the saved settings have no estimate
        self._checks = 0  # which check's result the screen waits for (an older one is dropped)

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
                yield from self._memory_rows()
                yield Static("", id="launch-state", markup=False)
            with VerticalScroll(id="side"):
                yield Static("Lint", classes="section")
                yield Static("checking…", id="lint")
                yield Static("Steps", classes="section")
                yield Static("", id="steps", markup=False)
                yield Static("VRAM", classes="section")
                yield Static("estimating…", id="vram", markup=False)
                yield Static("Command", classes="section")
                yield Static("", id="command", markup=False)
        yield Footer()

    def _memory_rows(self) -> ComposeResult:
        """The settings the VRAM estimate turns on most: batch and resolution (every dataset), gradient
        checkpointing, precision."""
        yield Label("memory (the VRAM estimate follows them)", classes="section")
        for key in tv.DATASET_KEYS:
            with Horizontal(classes="row"):
                yield Label(key)
                shown = tv.shown_dataset_value(self.project, key)
                yield Input(shown or "", id=f"m-{key}", placeholder=tv.DIFFERS if shown is None else "(default)")
        with Horizontal(classes="row"):
            yield Label("gradient_checkpointing")
            yield Switch(bool(self.project.training.get("gradient_checkpointing")), id="s-gradient_checkpointing")
        with Horizontal(classes="row"):
            yield Label("mixed_precision")
            yield Select([(p, p) for p in tv.PRECISIONS], value=self.project.training.get("mixed_precision")
                         or Select.NULL, prompt="(default: no)", id="s-mixed_precision")

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
        if ident != "model" and not ident.startswith(("p-", "m-")):
            return
        if ident.startswith("m-") and not event.value.strip() and tv.shown_dataset_value(self.project,
                                                                                          ident[2:]) is None:
            self.notify(f"type a value to set every dataset's {ident[2:]}", markup=False)
            return
        try:
            updated = tv.with_field(self.project, ident, event.value)
            project.save(updated)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False, timeout=8)
            return
        self.project = updated
        self.app.project = self.project  # type: ignore[attr-defined]
        self.drafts.pop(ident, None)
        key = "base model" if ident == "model" else ident[2:]
        self.notify(f"saved {key}", timeout=2, markup=False)
        self.check()

    def _saved_text(self, ident: str) -> str:
        """What the field shows for the saved project (a typed text equal to it is no edit)."""
        if ident == "model":
            return str(self.project.model.get(MODEL_KEY) or "")
        if ident.startswith("m-"):
            return tv.shown_dataset_value(self.project, ident[2:]) or ""
        value = self.project.training.get(ident[2:])
        return "" if value is None else str(value)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        """Keep what was typed as a draft; the estimate follows it after a pause."""
        ident = event.input.id or ""
        if ident != "model" and not ident.startswith(("p-", "m-")):
            return
        if event.value.strip() == self._saved_text(ident).strip():
            if self.drafts.pop(ident, None) is None:
                return  # nothing changed (a field filled in on mount)
        else:
            self.drafts[ident] = event.value
        if self._vram_timer is not None:
            self._vram_timer.stop()
        self._vram_timer = self.set_timer(PREVIEW_DELAY, self._preview)

    @on(Switch.Changed, "#s-gradient_checkpointing")
    def _switch(self, event: Switch.Changed) -> None:
        if event.value != bool(self.project.training.get("gradient_checkpointing")):
            self._save(("training",), "gradient_checkpointing", event.value or None)

    @on(Select.Changed, "#s-mixed_precision")
    def _precision(self, event: Select.Changed) -> None:
        value = event.value if event.value in tv.PRECISIONS else None  # the blank choice: the default
        if value != self.project.training.get("mixed_precision"):
            self._save(("training",), "mixed_precision", value)

    @on(Select.Changed, "#backend")
    def _backend(self, event: Select.Changed) -> None:
        if event.value != self.project.backend and event.value in BACKENDS:
            self._save(("project",), "backend", event.value)

    # -- checking ---------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.project.backend

    def check(self) -> None:
        """Check the saved project again. Until the result lands the old one is gone: a launch waits
        ("still checking") rather than ask (or not) on the estimate of settings no longer saved, and
        the panel says it is estimating rather than show the old figure."""
        self._checks += 1
        self.preflight, self.vram = None, None
        if self.is_mounted:
            self._vram_shown += 1  # a typed edit's estimate still running is dropped too: it is redone after
            self._show_vram(tv.render(None), self._vram_shown)
            self._show_state()
        self._check_worker(self.project, self._checks)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _check_worker(self, proj: Project, nth: int) -> None:
        result = launcher.preflight(proj, backend=proj.backend)
        command = trainer_command(proj)
        try:
            found, note = tv.estimate_for(proj, result.scans, result.steps), None
        except Exception as exc:  # an estimate must never stop the checks: the panel says why it has none
            found, note = None, f"{type(exc).__name__}: {exc}"
        self.app.call_from_thread(self._checked, result, command, found, note, nth)

    def _checked(self, result: launcher.Preflight, command: str, found: tv.Assessment | None = None,
                 note: str | None = None, nth: int | None = None) -> None:
        if not self.is_mounted:  # left before the checks finished
            return
        if nth is not None and nth != self._checks:  # an older check (its thread ran on): a newer one is due
            return
        self.preflight = result
        self.vram, self._vram_note = found, note
        self._preview()  # the saved settings' estimate, or the typed edits' when the form holds some
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

    # -- the VRAM estimate of what is typed --------------------------------------------------------
    def _preview(self) -> None:
        """Show the saved settings' estimate, or start one of the typed edits (each newer than the last:
        an older worker finishing late is ignored)."""
        self._vram_timer = None
        self._vram_shown += 1
        if not self.drafts:
            if self.preflight is not None:
                self._show_vram(tv.render(self.vram, error=self._vram_note), self._vram_shown)
            return
        self._estimate_drafts(self.project, dict(self.drafts),
                              self.preflight.scans if self.preflight is not None else None, self._vram_shown)

    @work(thread=True, exclusive=True, group="vram", exit_on_error=False)
    def _estimate_drafts(self, proj: Project, drafts: dict[str, str], scans: list[Any] | None, nth: int) -> None:
        drafted, problem = tv.draft_project(proj, drafts)
        try:
            text = tv.render(tv.estimate_for(drafted, scans), drafted=True, problem=problem)
        except Exception as exc:  # an estimate must never take the screen down: say why there is none
            text = tv.render(None, drafted=True, problem=problem, error=f"{type(exc).__name__}: {exc}")
        self.app.call_from_thread(self._show_vram, text, nth)

    def _show_vram(self, text: Any, nth: int) -> None:
        if self.is_mounted and nth == self._vram_shown:
            self.query_one("#vram", Static).update(text)

    def _show_state(self, line: str | None = None) -> None:
        result = self.preflight
        if line is None:
            if result is None:
                line = "checking…"
            elif result.blocked:
                line = "launch blocked: fix the errors on the right"
            elif result.warnings or self._over():
                why = [f"{len(result.warnings)} warning(s)"] if result.warnings else []
                why += ["the VRAM estimate is over the card's free memory"] if self._over() else []
                line = f"ready: ctrl+s launches (asks first: {', '.join(why)}), ctrl+e queues"
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
        lines = [f.line() for f in result.warnings[:8]]
        if self._over() and self.vram is not None:
            lines.append(tv.question(self.vram))
        unsaved = [("base model" if i == "model" else i[2:]) for i in self.drafts]
        if unsaved:  # the form shows values the run would not get: say so rather than launch on the saved ones
            lines.append(f"typed but not saved: {', '.join(unsaved)}; the run uses the saved values "
                         "(enter in a field saves it)")
        if lines:
            what = [f"{len(result.warnings)} warning(s)"] if result.warnings else []
            what += ["VRAM estimate over the free memory"] if self._over() else []
            what += ["unsaved edits"] if unsaved else []

            def answered(yes: bool | None) -> None:
                if yes:
                    self._launch(queue)

            self.app.push_screen(Confirm(f"{' and '.join(what)}: launch anyway?", "\n".join(lines)), answered)
            return
        self._launch(queue)

    def _over(self) -> bool:
        """The saved settings' estimate exceeds the card's free memory (a test model's never does)."""
        return self.vram is not None and self.vram.over

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

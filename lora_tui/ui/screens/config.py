"""Config screen: lora-tui.toml as a form, with the live steps breakdown and the launch command.

Typing in a field previews its effect: after a short pause the steps math runs again in a worker on
the project *as it would be* (``project.with_value``; nothing saved). Enter saves the field through
core (``project.update``: validated, comments kept, file untouched on a bad value). Leaving with
fields typed but not saved asks first. The screen dismisses with the saved project (None if nothing
was saved), so the caller decides what to do with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Input, Label, Select, Static, Switch

from lora_tui.core import configs, project, schema, steps, train_args
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.ui.actions import Action, Actions, ActionScreen
from lora_tui.ui.screens.modals import AskUnsaved
from lora_tui.ui.widgets.footer import Footer
from lora_tui.ui.widgets.path_suggester import PathSuggester, model_suggester

# The flags people change most (the seed recipe's), in front; everything else stays in the file.
TRAINING_FIELDS = ("network_dim", "network_alpha", "learning_rate", "unet_lr", "text_encoder_lr", "optimizer_type",
                   "lr_scheduler", "lr_warmup_steps", "max_train_epochs", "max_train_steps", "save_every_n_epochs",
                   "mixed_precision", "gradient_checkpointing", "cache_latents", "clip_skip", "seed")
DATASET_FIELDS = ("resolution", "batch_size")
SUBSET_FIELDS = ("num_repeats", "class_tokens", "trigger_word")
MODEL_FIELDS = ("pretrained_model_name_or_path",)


@dataclass(frozen=True)
class Field:
    where: tuple[str | int, ...]
    key: str
    label: str

    @property
    def widget_id(self) -> str:
        return "f-" + "-".join(str(p) for p in (*self.where, self.key))


def _kind(key: str) -> tuple[str, list[str]]:
    spec = train_args.known_args().get(key)
    if spec:
        return spec["kind"], [str(c) for c in spec.get("choices") or []]
    if key in ("class_tokens", "trigger_word"):
        return "str", []
    return {"int": "int", "reso": "int", "bool": "flag"}.get(schema.DATASET_ASCENDABLE.get(key, "")
                                                            or schema.SUBSET_ASCENDABLE.get(key, ""), "str"), []


def parse_value(key: str, text: str) -> Any:
    """Form text → TOML value of the right type; "" removes the key (the default applies)."""
    text = text.strip()
    if text == "":
        return None
    if key == "resolution":  # sd-scripts' flag is a "w,h" string; the dataset key an int or [w, h]
        return _resolution(text)
    kind, _ = _kind(key)
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return int(text) if key == "lr_warmup_steps" and text.isdigit() else _finite(float(text))
        if kind == "list":
            return [_finite(float(v)) for v in text.replace(",", " ").split()]
    except ValueError:
        raise LoraTuiError(f"{key}: {text!r} is not a number", hint="type a number, or clear the field") from None
    return text


def _finite(value: float) -> float:
    """nan and inf parse as floats but no trainer can use them (a learning rate of nan trains nothing)."""
    if not math.isfinite(value):
        raise ValueError(value)
    return value


def _resolution(text: str) -> int | list[int]:
    """``512`` → 512; ``768,512`` (or ``768x512``, ``768 512``, as the field shows a pair) → [768, 512]."""
    parts = [p for p in text.lower().replace("x", ",").replace("×", ",").replace(" ", ",").split(",") if p]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) in (1, 2):
        return numbers[0] if len(numbers) == 1 or numbers[0] == numbers[1] else numbers
    raise LoraTuiError(f"resolution: {text!r} is not 512, or width,height such as 768,512",
                       hint="type a number, or clear the field")


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


PREVIEW_DELAY = 0.3  # seconds of quiet typing before the steps are recomputed


class ConfigScreen(ActionScreen):
    BINDING_GROUP_TITLE = "Config"
    ACTIONS = Actions("config", "Config", group="config", intro=(
        "The steps breakdown and launch command follow what you type; enter saves the field to "
        "lora-tui.toml (validated; comments kept); an empty field means the default."), actions=(
        Action("config.write", "ctrl+w", "Write configs", "write_configs", priority=True,
               title="Write configs for sd-scripts"),
        Action("config.back", "escape", "Back", "back", title="Back to the project overview"),
    ), notes=("**tab / shift+tab** move between fields · **enter** save the field",))
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    ConfigScreen #form { width: 60%; padding: 0 1; }
    ConfigScreen .row { height: 3; }
    ConfigScreen .row Label { width: 26; padding: 1 1 0 0; }
    ConfigScreen .row Input, ConfigScreen .row Select { width: 1fr; }
    ConfigScreen .section { color: $primary; text-style: bold; margin-top: 1; }
    ConfigScreen #side { padding: 0 1; }
    """

    def __init__(self, proj: Project) -> None:
        super().__init__()
        self.project = proj
        self.fields: dict[str, Field] = {}
        self.saved = False
        self.drafts: dict[str, str] = {}  # widget id → text typed and not saved yet
        self._preview_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="form"):
                yield Label("model", classes="section")
                yield from self._rows(("model",), MODEL_FIELDS, self.project.doc.get("model", {}))
                for ds in self.project.datasets:
                    yield Label(f"dataset {ds.index}", classes="section")
                    yield from self._rows(("datasets", ds.index), DATASET_FIELDS, ds.values)
                    for sub in ds.subsets:
                        kind = "reg " if sub.is_reg else ""
                        yield Label(f"{kind}subset {ds.index}.{sub.index} · {sub.name}", classes="section",
                                    markup=False)
                        yield from self._rows(("datasets", ds.index, "subsets", sub.index), SUBSET_FIELDS,
                                              sub.values)
                yield Label("training", classes="section")
                yield from self._rows(("training",), TRAINING_FIELDS, self.project.training)
            with VerticalScroll(id="side"):
                yield Static("computing steps…", id="steps", markup=False)
                yield Static("", id="command", markup=False)
        yield Footer()

    def _rows(self, where: tuple[str | int, ...], keys: tuple[str, ...], values: dict[str, Any]) -> ComposeResult:
        for key in keys:
            field = Field(where, key, key)
            self.fields[field.widget_id] = field
            kind, choices = _kind(key)
            with Horizontal(classes="row"):
                yield Label(key)
                if kind == "flag":
                    yield Switch(bool(values.get(key, False)), id=field.widget_id)
                elif choices:
                    yield Select([(c, c) for c in choices], value=values.get(key, Select.NULL),
                                 id=field.widget_id, allow_blank=True)
                else:
                    yield Input(_shown(values.get(key)), id=field.widget_id, placeholder="(default)",
                                suggester=_path_suggester(key, self.project.root))

    def on_mount(self) -> None:
        self.title = f"lora-tui · {self.project.name}"
        self.sub_title = "config"
        self.refresh_side()

    def _apply(self, widget_id: str | None, value: Any) -> None:
        field = self.fields.get(widget_id or "")
        if field is None:
            return
        try:
            self.project = project.update(self.project, field.where, field.key, value)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False, timeout=8)
            return
        self.saved = True
        self.drafts.pop(widget_id or "", None)
        self.notify(f"saved {field.key}", timeout=2, markup=False)
        self.refresh_side()

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        """Keep what was typed as a draft and preview it after a pause."""
        field = self.fields.get(event.input.id or "")
        if field is None:
            return
        if event.value.strip() == _shown(self._current(field)).strip():
            self.drafts.pop(field.widget_id, None)
        else:
            self.drafts[field.widget_id] = event.value
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._preview)

    def _draft_project(self) -> tuple[Project, str | None]:
        """The project with every draft applied (unsaved), and the first draft that is not valid."""
        proj = self.project
        for widget_id, text in self.drafts.items():
            field = self.fields[widget_id]
            try:
                proj = project.with_value(proj, field.where, field.key, parse_value(field.key, text))
            except LoraTuiError as exc:
                return proj, str(exc)
        return proj, None

    def _preview(self) -> None:
        proj, problem = self._draft_project()
        self.refresh_side(proj, problem)

    @on(Input.Submitted)
    def _input(self, event: Input.Submitted) -> None:
        field = self.fields.get(event.input.id or "")
        if field is None:
            return
        try:
            value = parse_value(field.key, event.value)
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self._apply(event.input.id, value)

    @on(Switch.Changed)
    def _switch(self, event: Switch.Changed) -> None:
        self._apply(event.switch.id, event.value or None)

    @on(Select.Changed)
    def _select(self, event: Select.Changed) -> None:
        value = None if event.select.is_blank() else event.value  # Select.BLANK is False in Textual 8
        field = self.fields.get(event.select.id or "")
        if field is not None and self._current(field) != value:
            self._apply(event.select.id, value)

    def _current(self, field: Field) -> Any:
        table: Any = self.project.doc
        for part in field.where:
            table = table.get(part, {}) if isinstance(part, str) else table[part]
        return table.get(field.key)

    @work(thread=True, exclusive=True, group="steps", exit_on_error=False)
    def refresh_side(self, proj: Project | None = None, problem: str | None = None) -> None:
        """Steps and launch command of ``proj`` (default: as saved); a draft's problem is said on top."""
        proj = proj or self.project
        try:
            report = steps.compute(proj)
            text = report.breakdown() + "\n\n" + report.summary_line()
            if proj is not self.project:
                text = "(with unsaved edits: enter saves a field)\n\n" + text
            if problem:
                text = f"not previewed: {problem}\n\n" + text
            launch = configs.backend_argv(proj, configs.build(proj))
            command = f"launch ({proj.backend}):\n" + train_args.shell_join(launch)
        except LoraTuiError as exc:
            text, command = str(exc), ""
        self.app.call_from_thread(self._show_side, text, command)

    def _show_side(self, text: str, command: str) -> None:
        self.query_one("#steps", Static).update(text)
        self.query_one("#command", Static).update(command)

    def action_back(self) -> None:
        """Leave; fields typed but not saved are not dropped without asking."""
        if not self.drafts:
            self.dismiss(self.project if self.saved else None)
            return
        names = ", ".join(self.fields[w].key for w in self.drafts)

        def answered(choice: str | None) -> None:
            if choice == "save":
                for widget_id, text in list(self.drafts.items()):
                    try:
                        value = parse_value(self.fields[widget_id].key, text)
                    except LoraTuiError as exc:
                        self.notify(str(exc), severity="error", markup=False)
                        return
                    self._apply(widget_id, value)
                    if widget_id in self.drafts:
                        return  # refused: stay, the notification says why
            if choice in ("save", "discard"):
                self.drafts.clear()
                self.dismiss(self.project if self.saved else None)

        self.app.push_screen(AskUnsaved(f"Not saved yet: {names}"), answered)

    def action_write_configs(self) -> None:
        try:
            generated = configs.write(self.project, steps.compute(self.project))
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False, timeout=8)
            return
        self.notify(f"wrote {generated.dataset_config.name} and {generated.args_config.name}", markup=False)


def _path_suggester(key: str, root: Path) -> PathSuggester | None:
    """Path completion (→) for the keys that name a file or folder; the base model's also offers the
    built-in models."""
    if key == "pretrained_model_name_or_path":
        return model_suggester(root)
    if key.endswith(("_dir", "_file", "_path")):
        return PathSuggester(root)
    return None

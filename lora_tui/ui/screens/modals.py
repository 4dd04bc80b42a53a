"""Small modal dialogs: ask for text, confirm a bulk-edit preview, find/replace."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Checkbox, Input, Label, Static

from lora_tui.core.bulk import Preview

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 90%; max-width: 120; height: auto; max-height: 90%; border: thick $primary;
                    background: $surface; padding: 1 2; }}
{name} .title {{ text-style: bold; color: $primary; margin-bottom: 1; }}
{name} .hint {{ color: $text-muted; margin-top: 1; }}
"""


class AskText(ModalScreen[str | None]):
    """One line of text, with completion from ``suggestions``; escape cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="AskText")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="modal.cancel")]

    def __init__(self, title: str, value: str = "", suggestions: list[str] | None = None) -> None:
        super().__init__()
        self.title_text, self.value = title, value
        self.suggester = SuggestFromList(suggestions, case_sensitive=False) if suggestions else None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title", markup=False)
            yield Input(self.value, suggester=self.suggester, id="answer")
            yield Label("enter: OK · escape: cancel · →: accept suggestion", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class ConfirmPreview(ModalScreen[bool]):
    """Shows which caption files change (before/after) and applies only on enter."""

    DEFAULT_CSS = MODAL_CSS.format(name="ConfirmPreview") + "ConfirmPreview VerticalScroll { height: auto; " \
                                                            "max-height: 30; }"
    BINDINGS = [
        Binding("enter,y", "dismiss(True)", "Apply", id="modal.apply"),
        Binding("escape,n", "dismiss(False)", "Cancel", id="modal.cancel"),
    ]

    def __init__(self, preview: Preview) -> None:
        super().__init__()
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.preview.label, classes="title", markup=False)
            with VerticalScroll():
                yield Static(self.preview.render(limit=200), markup=False)
            yield Label("enter: apply (undo with u) · escape: cancel", classes="hint")


@dataclass(frozen=True)
class ReplaceRequest:
    find: str
    replace: str
    regex: bool


class AskReplace(ModalScreen[ReplaceRequest | None]):
    DEFAULT_CSS = MODAL_CSS.format(name="AskReplace")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="modal.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Find and replace in the captions shown", classes="title")
            yield Input(placeholder="find", id="find")
            yield Input(placeholder="replace with", id="replace")
            yield Checkbox("regular expression", id="regex")
            yield Label("enter in 'replace with': preview · escape: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "find":
            self.query_one("#replace", Input).focus()
            return
        self.dismiss(ReplaceRequest(self.query_one("#find", Input).value, event.value,
                                    self.query_one("#regex", Checkbox).value))


class AskUnsaved(ModalScreen[str | None]):
    """Edits not saved yet: save them, discard them, or stay (escape)."""

    DEFAULT_CSS = MODAL_CSS.format(name="AskUnsaved")
    BINDINGS = [
        Binding("s,enter", "dismiss('save')", "Save", id="modal.save"),
        Binding("d", "dismiss('discard')", "Discard", id="modal.discard"),
        Binding("escape", "dismiss(None)", "Stay", id="modal.cancel"),
    ]

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.what, classes="title", markup=False)
            yield Label("s / enter: save them · d: discard them · escape: stay", classes="hint")

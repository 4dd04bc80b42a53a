"""A yes/no question for actions that cannot be taken back (stop a run at once, launch despite warnings)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from lora_tui.ui.actions import Action, Actions
from lora_tui.ui.screens.modals import MODAL_CSS


class Confirm(ModalScreen[bool]):
    """``y`` or enter answers yes; ``n`` or escape answers no."""

    DEFAULT_CSS = MODAL_CSS.format(name="Confirm")
    ACTIONS = Actions("confirm", "Question", actions=(
        Action("confirm.yes", "y,enter", "Yes", "dismiss(True)", palette=False),
        Action("confirm.no", "n,escape", "No", "dismiss(False)", palette=False),
    ))
    BINDINGS = ACTIONS.bindings()

    def __init__(self, title: str, body: str = "") -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title", markup=False)
            if self.body:
                yield Static(self.body, markup=False)
            yield Label("y / enter: yes · n / escape: no", classes="hint")

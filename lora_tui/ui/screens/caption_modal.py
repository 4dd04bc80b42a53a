"""The auto-caption dialog: which model, which images, how to treat existing captions.

The last choices are remembered in ``.lora-tui/caption.json`` so a second run (after fixing a few
captions) is one key away. Advanced flags (thresholds, exclude list, dtype …) go in "more options"
exactly as on the command line.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from lora_tui.core.fsio import atomic_write_text
from lora_tui.ui.screens.modals import CANCEL, MODAL_CSS

SETTINGS_FILE = "caption.json"
MODES = (("only images without a caption", "missing-only"), ("replace existing captions", "overwrite"),
         ("add new tags to existing captions", "append"))


@dataclass
class CaptionRequest:
    """What the user asked for; ``scope`` is "image", "shown" or "all"."""

    model: str
    mode: str = "missing-only"
    scope: str = "shown"
    prompt: str = ""
    extra: str = ""
    images: list[str] = field(default_factory=list)

    def extra_args(self) -> list[str]:
        return shlex.split(self.extra) if self.extra.strip() else []


def load_last(root: Path) -> CaptionRequest:
    """The previous run's choices (or empty defaults)."""
    try:
        data = json.loads((root / ".lora-tui" / SETTINGS_FILE).read_text("utf-8"))
        return CaptionRequest(**{k: str(v) for k, v in data.items() if k in ("model", "mode", "scope", "prompt",
                                                                            "extra")})
    except (OSError, ValueError, TypeError):
        return CaptionRequest("")


def save_last(root: Path, request: CaptionRequest) -> None:
    data = {k: v for k, v in asdict(request).items() if k != "images"}
    try:
        (root / ".lora-tui").mkdir(exist_ok=True)
        atomic_write_text(root / ".lora-tui" / SETTINGS_FILE, json.dumps(data, indent=1) + "\n")
    except OSError:
        pass  # only a convenience


class AskCaption(ModalScreen[CaptionRequest | None]):
    """Model folder, scope, mode, prompt and more options; enter in any field starts, escape cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="AskCaption") + "AskCaption Select { margin-bottom: 1; }"
    BINDINGS = [CANCEL]  # the dialogs' own escape (modals' actions table)

    def __init__(self, last: CaptionRequest, counts: dict[str, int]) -> None:
        super().__init__()
        self.last = last
        self.counts = counts

    def compose(self) -> ComposeResult:
        scopes = [(f"{label} ({self.counts.get(key, 0)} images)", key) for label, key in
                  (("the images shown", "shown"), ("this image", "image"), ("every image of the project", "all"))
                  if self.counts.get(key)]
        scope = self.last.scope if any(k == self.last.scope for _, k in scopes) else (scopes[0][1] if scopes else "all")
        with Vertical():
            yield Label("Auto-caption with a local model", classes="title")
            yield Input(self.last.model, placeholder="model folder (BLIP/GIT/VLM, or WD14 tagger with "
                        "selected_tags.csv)", id="model")
            yield Select(scopes, value=scope, allow_blank=False, id="scope")
            yield Select(MODES, value=self.last.mode if self.last.mode in dict(MODES).values() else "missing-only",
                         allow_blank=False, id="mode")
            yield Input(self.last.prompt, placeholder="prompt (chat-style models; the caption's start for BLIP/GIT)",
                        id="prompt")
            yield Input(self.last.extra, placeholder="more options, as on the command line: --threshold 0.4 "
                        "--exclude 'solo' --batch-size 16 --dtype bf16", id="extra")
            yield Label("enter: start (runs in its own process; cancel from the palette) · escape: close",
                        classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        model = self.query_one("#model", Input).value.strip()
        if not model:
            self.notify("give the model's folder first", severity="warning")
            self.query_one("#model", Input).focus()
            return
        extra = self.query_one("#extra", Input).value
        try:
            shlex.split(extra)
        except ValueError as exc:
            self.notify(f"more options: {exc}", severity="error", markup=False)
            return
        self.dismiss(CaptionRequest(model, str(self.query_one("#mode", Select).value),
                                    str(self.query_one("#scope", Select).value),
                                    self.query_one("#prompt", Input).value, extra))

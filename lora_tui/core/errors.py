"""The user-facing error types shared by every layer.

Each error renders as one line that names the file (and line, where known) and says how to fix
it; the CLI maps the class to an exit code, the TUI to a notification.
"""

from __future__ import annotations

from pathlib import Path


class LoraTuiError(Exception):
    """An error the user can act on; never shown with a traceback."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split("\n"))


class ProjectError(LoraTuiError):
    """The project folder or its lora-tui.toml cannot be used as it is."""


class ConfigError(LoraTuiError):
    """A TOML file (ours or sd-scripts') breaks its schema."""


class CaptionError(LoraTuiError):
    """A caption sidecar cannot be read or written."""


class JournalError(LoraTuiError):
    """Undo/redo cannot proceed without overwriting someone else's change."""


class BusyError(JournalError):
    """Another process (or another part of the app) is writing captions right now; retry shortly.

    Exit code 75 is sysexits' EX_TEMPFAIL: a script may simply run the command again.
    """

    exit_code = 75


class ImageError(LoraTuiError):
    """An image file cannot be read as an image."""


class ModelError(LoraTuiError):
    """A base model (checkpoint, Diffusers folder, tokenizer) cannot be loaded offline."""


class TrainError(LoraTuiError):
    """Training cannot start or continue: a bad flag, an empty dataset, an unusable state."""


class Terminated(BaseException):
    """SIGTERM arrived while a command was preparing something it must not leave half-made (raised by
    the command's handler, caught by the CLI: exit 143)."""

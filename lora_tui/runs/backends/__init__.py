"""Training backends: what each one runs, how it reports progress, how it is stopped.

A backend is chosen per run (``[project] backend`` or ``--backend``) and recorded in run.toml, so
the supervisor, which only has the run folder, gets the same answers the launcher got.
"""

from __future__ import annotations

from lora_tui.core.errors import LoraTuiError
from lora_tui.runs.backends.base import Backend
from lora_tui.runs.backends.builtin import BuiltinBackend
from lora_tui.runs.backends.sd_scripts import SdScriptsBackend

BACKENDS: dict[str, type[Backend]] = {"builtin": BuiltinBackend, "sd-scripts": SdScriptsBackend}


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]()
    except KeyError:
        raise LoraTuiError(f"unknown backend {name!r}", hint="use builtin or sd-scripts") from None


__all__ = ["BACKENDS", "Backend", "get"]

"""Path completion for fields that name a file or folder (the base model above all).

Over SSH nobody remembers where the checkpoint sits; typing ``~/mod`` and taking ``~/models/`` with →
is how shells taught users to enter paths. The suggestion keeps what the user typed (``~``, a relative
path) and adds only the rest of the name, so nothing is rewritten behind their back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path

from textual.suggester import Suggester

from lora_tui.core import builtin_models

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
MAX_ENTRIES = 5000  # a folder with more names than this is not listed (a slow mount must not stall typing)


class PathSuggester(Suggester):
    """Completes the last part of a path from the file system (folders get a trailing ``/``).

    ``suffixes`` limits the files offered (folders are always offered); relative paths are taken from
    ``base`` (the project folder, as the project file reads them).
    """

    def __init__(self, base: Path, *, suffixes: tuple[str, ...] | None = None,
                 references: Iterable[str] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base = base
        self.suffixes = suffixes
        self.references = tuple(references)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for reference in self.references:  # lora-tui:tiny-sd15 and its kind
            if reference.startswith(value) and reference != value:
                return reference
        return await asyncio.to_thread(self._complete, value)

    def _complete(self, value: str) -> str | None:
        folder_text, _, partial = value.rpartition("/")
        folder = Path(os.path.expanduser(folder_text + "/" if folder_text or value.startswith("/") else "."))
        if not folder.is_absolute():
            folder = self.base / folder
        try:
            with os.scandir(folder) as entries:
                names = []
                for entry in entries:
                    if len(names) >= MAX_ENTRIES:
                        return None
                    if not entry.name.startswith(partial) or entry.name == partial:
                        continue
                    if entry.name.startswith(".") and not partial.startswith("."):
                        continue
                    names.append(self._offer(entry))
        except OSError:
            return None
        offered = sorted(n for n in names if n)
        return value + offered[0][len(partial):] if offered else None

    def _offer(self, entry: os.DirEntry[str]) -> str | None:
        try:
            if entry.is_dir():
                return entry.name + "/"
        except OSError:
            return None
        if self.suffixes is None or entry.name.lower().endswith(self.suffixes):
            return entry.name
        return None


def model_suggester(project_root: Path) -> PathSuggester:
    """For ``pretrained_model_name_or_path``: checkpoints, Diffusers folders and the built-in models."""
    names = [name.strip() for name in builtin_models.known_names().split(",")]
    return PathSuggester(project_root, suffixes=MODEL_SUFFIXES, references=names)

"""Caption edits that could not be saved when the app closed, kept so they are never lost.

Quitting saves the open edit; when that cannot happen (another writer holds the lock past the wait,
the file changed on disk, it became read-only) the text goes to ``.lora-tui/unsaved/`` next to a note
of which caption it was meant for, and the next app start and ``lora-tui check`` say so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lora_tui.core.fsio import atomic_write_text

FOLDER = "unsaved"


def folder(root: Path) -> Path:
    return Path(root) / ".lora-tui" / FOLDER


def stash(root: Path, caption: Path, text: str, why: str, *, entry: str | None = None) -> Path:
    """Keep ``text`` meant for ``caption``; returns the file it went to. ``entry``: the key of a
    fine-tuning entry in the metadata file ``caption`` (the note names both; the kept file is named
    after the image, never ``….json``, which would read as a note)."""
    target = folder(root)
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = caption.name if entry is None else Path(entry).name + ".txt"
    path = target / f"{stamp}-{name}"
    n = 2
    while path.exists():
        path = target / f"{stamp}-{n}-{name}"
        n += 1
    atomic_write_text(path, text)
    note: dict[str, object] = {"caption": str(caption), "why": why, "t": time.time()}
    if entry is not None:
        note["entry"] = entry
    atomic_write_text(path.with_name(path.name + ".json"), json.dumps(note) + "\n")
    return path


def stashed(root: Path) -> list[Path]:
    """Kept edits, oldest first (their notes excluded)."""
    try:
        return sorted(p for p in folder(root).iterdir() if p.is_file() and not p.name.endswith(".json"))
    except OSError:
        return []

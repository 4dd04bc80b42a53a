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


def stash(root: Path, caption: Path, text: str, why: str) -> Path:
    """Keep ``text`` meant for ``caption``; returns the file it went to."""
    target = folder(root)
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = target / f"{stamp}-{caption.name}"
    n = 2
    while path.exists():
        path = target / f"{stamp}-{n}-{caption.name}"
        n += 1
    atomic_write_text(path, text)
    atomic_write_text(path.with_name(path.name + ".json"),
                      json.dumps({"caption": str(caption), "why": why, "t": time.time()}) + "\n")
    return path


def stashed(root: Path) -> list[Path]:
    """Kept edits, oldest first (their notes excluded)."""
    try:
        return sorted(p for p in folder(root).iterdir() if p.is_file() and not p.name.endswith(".json"))
    except OSError:
        return []

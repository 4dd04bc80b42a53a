"""Reading the caption journal of lora-tui 0.1 (``.lora-tui/journal.jsonl``), to migrate it.

That file was append-only JSON lines: ``edit`` (each file's full text before and after), ``undo``,
``redo`` and ``abort`` (an edit whose writes never happened). Replaying it rebuilds the undo and
redo stacks; torn or damaged lines (a crash mid-append) are skipped, as 0.1 itself did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core.errors import JournalError

LEGACY_NAME = "journal.jsonl"


@dataclass
class LegacyEntry:
    id: str
    label: str
    t: float
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # path, before, after


@dataclass
class LegacyHistory:
    done: list[LegacyEntry] = field(default_factory=list)  # oldest first
    undone: list[LegacyEntry] = field(default_factory=list)  # the next redo last


def read_legacy(file: Path) -> LegacyHistory:
    """The undo/redo stacks a 0.1 journal describes (paths as written there: relative or absolute)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read the old caption journal: {exc.strerror or exc}", path=file,
                           hint="fix its permissions, or clear it: lora-tui captions PROJECT forget") from None
    entries: dict[str, LegacyEntry] = {}
    history = LegacyHistory()
    cleared: tuple[str, list[LegacyEntry]] = ("", [])
    for raw in data.split(b"\n"):
        try:
            rec = json.loads(raw.decode("utf-8"))
            if isinstance(rec, dict):
                cleared = _replay(rec, entries, history, cleared)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return history


def _replay(rec: dict[str, Any], entries: dict[str, LegacyEntry], history: LegacyHistory,
            cleared: tuple[str, list[LegacyEntry]]) -> tuple[str, list[LegacyEntry]]:
    kind, done, undone = rec.get("kind"), history.done, history.undone
    if kind == "edit":
        changes = [(str(c["path"]), c.get("before"), c.get("after")) for c in rec.get("changes", [])]
        entry = LegacyEntry(str(rec["id"]), str(rec.get("label", "")), float(rec.get("t", 0.0)), changes)
        entries[entry.id] = entry
        done.append(entry)
        cleared = (entry.id, list(undone))
        undone.clear()
    elif kind == "abort" and rec.get("id") in {e.id for e in done}:
        done[:] = [e for e in done if e.id != rec["id"]]
        if cleared[0] == rec["id"]:  # an edit that never happened kept redo alive
            undone[:] = cleared[1]
    elif kind == "undo" and done and done[-1].id == rec.get("id"):
        undone.append(done.pop())
    elif kind == "redo" and undone and undone[-1].id == rec.get("id"):
        done.append(undone.pop())
    return cleared

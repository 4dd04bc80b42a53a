"""Pure logic of the caption journal: the undo/redo stacks, outcomes, size limits and trimming.

Nothing here touches the disk, so the rules (what undo restores next, what trimming may drop,
how a partial outcome is reported) are tested on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lora_tui.core.journal_store import OpRow
from lora_tui.core.swap import CHANGED_ELSEWHERE

MB = 1 << 20
DAY = 86400.0


@dataclass(frozen=True)
class Entry:
    """An edit as history shows it. ``state_op`` is the operation (the edit itself, or its latest
    undo or redo) whose file list says what the next undo or redo restores; ``files`` its count."""

    seq: int
    id: str
    label: str
    t: float
    files: int
    state_op: int


@dataclass(frozen=True)
class JournalLimits:
    """How much history to keep: up to ``max_bytes`` and ``max_age_s``, oldest dropped first, but
    never the last ``keep_last`` edits nor anything redo can still bring back."""

    max_bytes: int = 200 * MB
    max_age_s: float = 90 * DAY
    keep_last: int = 20

    @classmethod
    def from_project(cls, project: Any) -> JournalLimits:
        """``[project] journal_max_mb`` and ``journal_max_days`` of a loaded project, else the defaults."""
        meta = project.doc.get("project", {}) if project is not None else {}
        mb, days = meta.get("journal_max_mb"), meta.get("journal_max_days")
        return cls(max_bytes=int(float(mb) * MB) if mb is not None else cls.max_bytes,
                   max_age_s=float(days) * DAY if days is not None else cls.max_age_s)


@dataclass(frozen=True)
class Outcome:
    """What an operation did: files written, and those left alone with the reason for each."""

    kind: str  # edit, undo or redo
    label: str
    written: int
    left_alone: tuple[tuple[Path, str], ...] = ()
    applied: bool = True  # False: nothing was written and history did not move
    # every file written, with the hash of what it now holds (journal_store.text_hash; None: deleted),
    # so a program watching the folder recognises its own writes by content
    wrote: tuple[tuple[Path, int | None], ...] = ()

    def report(self, root: Path | None = None, limit: int = 5) -> str | None:
        """One line naming the captions left alone, or None if every file was written."""
        if not self.left_alone:
            return None
        changed = [_show(p, root) for p, why in self.left_alone if why == CHANGED_ELSEWHERE]
        other = [(_show(p, root), why) for p, why in self.left_alone if why != CHANGED_ELSEWHERE]
        parts = []
        if changed:
            were = "was" if len(changed) == 1 else "were"
            parts.append(f"{_n(len(changed))} changed elsewhere {were} left alone: {_names(changed, limit)}")
        if other:
            shown = [f"{p} ({why})" for p, why in other]
            parts.append(f"{_n(len(other))} could not be written: {_names(shown, limit)}")
        return "; ".join(parts)


def _n(count: int) -> str:
    return f"{count} caption" + ("" if count == 1 else "s")


def _show(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return str(path)


def _names(names: Sequence[str], limit: int) -> str:
    text = ", ".join(names[:limit])
    return text + (f", … and {len(names) - limit} more" if len(names) > limit else "")


def replay(ops: Sequence[OpRow]) -> tuple[list[Entry], list[Entry], list[OpRow]]:
    """The undo stack (applied edits, oldest first), the redo stack (next redo last) and the
    operations still marked ``intent`` (interrupted, or running in another process)."""
    done: list[Entry] = []
    undone: list[Entry] = []
    pending: list[OpRow] = []
    for op in ops:
        if op.state == "intent":
            pending.append(op)
        elif op.state != "done":
            continue
        elif op.kind == "edit":
            done.append(Entry(op.seq, op.id, op.label, op.t, op.files, op.seq))
            undone.clear()
        elif op.kind == "undo" and done and done[-1].seq == op.target:
            undone.append(replace(done.pop(), files=op.files, state_op=op.seq))
        elif op.kind == "redo" and undone and undone[-1].seq == op.target:
            done.append(replace(undone.pop(), files=op.files, state_op=op.seq))
    return done, undone, pending


def plan_trim(ops: Sequence[OpRow], limits: JournalLimits, now: float, size: int) -> list[int]:
    """Operations to drop so the journal fits its caps: whole edits (with their undos and redos),
    oldest first, while it is over the size cap or they are older than the age cap."""
    _, undone, pending = replay(ops)
    edits = [op.seq for op in ops if op.kind == "edit"]
    protected = set(edits[-limits.keep_last:]) if limits.keep_last else set()
    protected |= {e.seq for e in undone} | {op.target or op.seq for op in pending}
    units: dict[int, list[OpRow]] = {}
    for op in ops:
        units.setdefault(op.seq if op.kind == "edit" else (op.target or op.seq), []).append(op)
    victims: list[int] = []
    estimate = size
    for key in sorted(units):
        if key in protected:
            continue
        unit = units[key]
        too_old = now - max(op.t for op in unit) > limits.max_age_s
        if not too_old and estimate <= limits.max_bytes:
            break
        victims.extend(op.seq for op in unit)
        estimate -= sum(op.bytes for op in unit)
    return victims

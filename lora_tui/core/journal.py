"""The caption journal: every edit is recorded before it is applied, so undo survives restarts.

``.lora-tui/journal.jsonl`` is append-only. An ``edit`` line carries each file's text before and
after; ``undo``/``redo`` lines move the cursor; ``abort`` marks an edit whose writes never happened.
Replaying the file rebuilds the undo and redo stacks, so quitting the app, a crash or a kill -9 loses
neither the edits nor their history.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tui.core.errors import JournalError
from lora_tui.core.fsio import WriteError, append_line, atomic_write_many, check_many, check_writable

JOURNAL_NAME = "journal.jsonl"


@dataclass(frozen=True)
class Change:
    """One file's content before and after an edit (None = the file does not exist)."""

    path: Path
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Entry:
    id: str
    label: str
    t: float
    changes: tuple[Change, ...]


def _read_current(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"cannot read: {exc}", path=path) from None


class Journal:
    """Undo/redo over caption files, persisted in ``<project>/.lora-tui/journal.jsonl``."""

    def __init__(self, root: Path, allowed: Iterable[Path] = ()) -> None:
        self.root = Path(root)
        self.file = self.root / ".lora-tui" / JOURNAL_NAME
        self.allowed = [self.root.resolve(), *(Path(p).resolve() for p in allowed)]
        self._root_prefix = os.path.join(str(self.root), "")
        self._entries: dict[str, Entry] = {}
        self._done: list[str] = []
        self._undone: list[str] = []
        self._cleared_redo: tuple[str, list[str]] = ("", [])
        self._load()

    # -- persistence -----------------------------------------------------------------------
    def _rel(self, path: Path | str) -> str:
        text = os.fspath(path)
        return text[len(self._root_prefix):] if text.startswith(self._root_prefix) else text

    def _abs(self, raw: str) -> Path:
        path = Path(raw)
        return path if path.is_absolute() else self.root / path

    def _load(self) -> None:
        try:
            data = self.file.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise JournalError(f"cannot read the caption journal: {exc.strerror or exc}", path=self.file,
                               hint="fix its permissions, or clear it: lora-tui captions PROJECT forget") from None
        for raw in data.split(b"\n"):
            try:
                rec = json.loads(raw.decode("utf-8"))
                if isinstance(rec, dict):
                    self._replay(rec)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn record after a crash (its edit never applied) or a damaged line

    def _replay(self, rec: dict[str, Any]) -> None:
        kind = rec.get("kind")
        if kind == "edit":
            changes = tuple(Change(self._abs(c["path"]), c.get("before"), c.get("after"))
                            for c in rec.get("changes", []))
            entry = Entry(str(rec["id"]), rec.get("label", ""), rec.get("t", 0.0), changes)
            self._entries[entry.id] = entry
            self._done.append(entry.id)
            self._cleared_redo = (entry.id, list(self._undone))
            self._undone.clear()
        elif kind == "abort" and rec.get("id") in self._done:
            self._done.remove(rec["id"])
            if self._cleared_redo[0] == rec["id"]:  # an edit that never happened keeps redo alive
                self._undone = self._cleared_redo[1]
        elif kind == "undo" and self._done and self._done[-1] == rec.get("id"):
            self._undone.append(self._done.pop())
        elif kind == "redo" and self._undone and self._undone[-1] == rec.get("id"):
            self._done.append(self._undone.pop())

    def _append(self, rec: dict[str, Any]) -> None:
        append_line(self.file, json.dumps(rec, ensure_ascii=False))
        self._replay(rec)

    # -- queries ----------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def history(self) -> list[Entry]:
        """Applied edits, oldest first."""
        return [self._entries[i] for i in self._done]

    def peek_undo(self) -> Entry | None:
        return self._entries[self._done[-1]] if self._done else None

    def peek_redo(self) -> Entry | None:
        return self._entries[self._undone[-1]] if self._undone else None

    # -- mutations --------------------------------------------------------------------------
    def _check_allowed(self, paths: Iterable[Path]) -> None:
        """Caption edits stay inside the project and the image folders it names (resolved once per folder)."""
        verdicts: dict[str, bool] = {}
        for path in paths:
            parent = os.path.dirname(os.fspath(path))
            if parent not in verdicts:
                real = Path(os.path.realpath(parent))
                verdicts[parent] = any(real == a or a in real.parents for a in self.allowed)
            if not verdicts[parent]:
                raise WriteError("refusing to write outside the project and its image folders", path=path)
            if os.path.islink(path):
                raise WriteError("caption file is a symlink; an atomic save would replace the link", path=path,
                                 hint="replace the link with a copy of the file")

    def apply(self, label: str, changes: Sequence[Change]) -> Entry | None:
        """Journal then write ``changes``; refuses if a file changed since the preview was made."""
        changes = [c for c in changes if c.before != c.after]
        if not changes:
            return None
        self._check_allowed(c.path for c in changes)
        for change in changes:
            if _read_current(change.path) != change.before:
                raise JournalError("file changed on disk since the preview", path=change.path,
                                   hint="preview the edit again")
        modes = check_many(c.path for c in changes)
        entry = Entry(uuid.uuid4().hex[:12], label, time.time(), tuple(changes))
        append_line(self.file, json.dumps(
            {"kind": "edit", "id": entry.id, "t": entry.t, "label": label,
             "changes": [{"path": self._rel(c.path), "before": c.before, "after": c.after} for c in changes]},
            ensure_ascii=False))
        self._entries[entry.id] = entry
        self._done.append(entry.id)
        self._cleared_redo = (entry.id, list(self._undone))
        self._undone.clear()
        self._write(entry.id, [(c.path, c.after) for c in changes], modes, on_failure="abort")
        return entry

    def _write(self, entry_id: str, targets: list[tuple[Path, str | None]], modes: dict[str, int] | None,
               *, on_failure: str) -> None:
        """Write the targets (None = delete); if that fails, journal ``on_failure`` so the history
        again matches the files (``abort`` for a new edit, the inverse move for undo/redo)."""
        writes = [(p, t.encode("utf-8")) for p, t in targets if t is not None]
        try:
            atomic_write_many(writes, modes)
        except WriteError as exc:
            if exc.applied == 0:  # nothing changed on disk: history goes back to match the files
                self._append({"kind": on_failure, "id": entry_id, "t": time.time()})
            # else some files changed: the entry stays, so undo/redo can finish or revert it
            raise
        for path, text in targets:
            if text is None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise WriteError(f"cannot delete: {exc.strerror or exc}", path=path) from exc

    def undo(self) -> Entry | None:
        """Restore the files of the last edit; a file edited elsewhere since is a conflict."""
        entry = self.peek_undo()
        if entry is None:
            return None
        targets = self._plan(entry, forward=False)
        self._append({"kind": "undo", "id": entry.id, "t": time.time()})
        self._write(entry.id, targets, None, on_failure="redo")
        return entry

    def redo(self) -> Entry | None:
        entry = self.peek_redo()
        if entry is None:
            return None
        targets = self._plan(entry, forward=True)
        self._append({"kind": "redo", "id": entry.id, "t": time.time()})
        self._write(entry.id, targets, None, on_failure="undo")
        return entry

    def _plan(self, entry: Entry, *, forward: bool) -> list[tuple[Path, str | None]]:
        targets = []
        for c in entry.changes:
            want, have = (c.after, c.before) if forward else (c.before, c.after)
            current = _read_current(c.path)
            if current == want:
                continue  # already there (e.g. the edit was interrupted before this file)
            if current != have:
                raise JournalError("file was changed outside lora-tui since this edit", path=c.path,
                                   hint="edit it by hand, or clear the history: lora-tui captions PROJECT forget")
            check_writable(c.path)
            targets.append((c.path, want))
        return targets

    def forget(self) -> None:
        """Drop the history (files stay as they are)."""
        clear_journal(self.root)
        self._entries.clear()
        self._done.clear()
        self._undone.clear()


def clear_journal(root: Path) -> None:
    """Remove a project's caption history, even one too damaged to load."""
    file = Path(root) / ".lora-tui" / JOURNAL_NAME
    try:
        if file.is_dir():
            shutil.rmtree(file)
        elif file.exists() or file.is_symlink():
            file.unlink()
    except OSError as exc:
        raise JournalError(f"cannot remove the journal: {exc.strerror or exc}", path=file) from None

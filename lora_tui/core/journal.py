"""The caption journal: every caption write is an operation that can be undone, even after a crash.

An operation (an edit, an undo, a redo) runs under the project's write lock (:mod:`.writelock`):

1. its intent, every file's text before and after, is committed to ``.lora-tui/journal.db``
   (:mod:`.journal_store`, texts stored once however many operations share them);
2. the files are swapped in, each only if it still holds what the operation read (:mod:`.swap`):
   a caption changed elsewhere meanwhile, or one that cannot be written, is left alone and reported;
3. it is marked done, listing only the files it wrote.

If the process dies between 1 and 3, the next command or app start finds the intent and
:meth:`Journal.recover` finishes it file by file (or drops it if no file had changed yet), so
history stays true. A journal of lora-tui 0.1 (``journal.jsonl``) is migrated the first time.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core import journal_legacy
from lora_tui.core.errors import BusyError, JournalError
from lora_tui.core.fsio import WriteError, remove_leftover_tmps
from lora_tui.core.journal_plan import Entry, JournalLimits, Outcome, plan_trim, replay
from lora_tui.core.journal_store import OpRow, Row, Store, text_hash
from lora_tui.core.swap import CHANGED_ELSEWHERE, Swap, read_current, swap_many
from lora_tui.core.writelock import WriteLock

__all__ = ["Change", "Entry", "Journal", "JournalLimits", "Outcome", "clear_journal"]

STATE_DIR = ".lora-tui"
TMP_DIR = "tmp"


@dataclass(frozen=True)
class Change:
    """One file's content before and after an edit (None = the file does not exist)."""

    path: Path
    before: str | None
    after: str | None


def _enc(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8")


class Journal:
    """Undo/redo over caption files, persisted in ``<project>/.lora-tui/journal.db``.

    ``allowed`` are the folders (besides the project) edits may write in: the subsets' image
    folders. ``command`` is how this process is named to another writer that has to wait.
    Call :meth:`recover` once when a program starts on a project (it also migrates a 0.1 journal);
    every operation recovers first by itself as well.
    """

    def __init__(self, root: Path, allowed: Iterable[Path] = (), *, limits: JournalLimits | None = None,
                 command: str | None = None) -> None:
        self.root = Path(root)
        self.state_dir = self.root / STATE_DIR
        self.store = Store(self.state_dir)
        self.lock = WriteLock(self.state_dir, command)
        self.tmp_dir = self.state_dir / TMP_DIR
        self.legacy_file = self.state_dir / journal_legacy.LEGACY_NAME
        self.allowed = [self.root.resolve(), *(Path(p).resolve() for p in allowed)]
        self.limits = limits or JournalLimits()
        self.clock: Callable[[], float] = time.time  # when operations happen (tests move it)
        self._root_prefix = os.path.join(str(self.root), "")
        self._done: list[Entry] = []
        self._undone: list[Entry] = []
        self._pending: list[OpRow] = []
        self.refresh()

    @classmethod
    def for_project(cls, project, command: str | None = None) -> Journal:
        """The journal of a loaded :class:`~lora_tui.core.project.Project`, with its folders and limits."""
        folders = [s.image_dir for s in project.subsets if s.image_dir]
        folders += [meta.parent for s in project.subsets if (meta := s.path("metadata_file")) is not None]
        return cls(project.root, folders, limits=JournalLimits.from_project(project), command=command)

    # -- paths ------------------------------------------------------------------------------
    def _rel(self, path: Path | str) -> str:
        text = os.fspath(path)
        return text[len(self._root_prefix):] if text.startswith(self._root_prefix) else text

    def _abs(self, raw: str) -> str:
        return raw if os.path.isabs(raw) else os.path.join(self.root, raw)

    # -- state --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the operations (another process may have written since)."""
        self._done, self._undone, self._pending = replay(self.store.ops())

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def interrupted(self) -> bool:
        """An operation was interrupted (or is running in another process right now)."""
        return bool(self._pending) or self.legacy_file.exists()

    def history(self) -> list[Entry]:
        """Applied edits, oldest first (reads only the small operations table)."""
        self.refresh()
        return list(self._done)

    def peek_undo(self) -> Entry | None:
        return self._done[-1] if self._done else None

    def peek_redo(self) -> Entry | None:
        return self._undone[-1] if self._undone else None

    def changes(self, entry: Entry) -> list[Change]:
        """The files an edit's current state covers, with their texts (for display and tests)."""
        rows = self.store.rows(entry.state_op)
        texts = self.store.texts(h for _, b, a in rows for h in (b, a))

        def text(h: int | None) -> str | None:
            return None if h is None else texts[h].decode("utf-8")

        return [Change(Path(self._abs(p)), text(b), text(a)) for p, b, a in rows]

    # -- operations ------------------------------------------------------------------------------
    def _check_allowed(self, paths: Iterable[Path]) -> None:
        """Caption edits stay inside the project and the image folders it names (resolved once per folder)."""
        verdicts: dict[str, bool] = {}
        for path in paths:
            head, sep, _ = os.fspath(path).rpartition(os.sep)
            parent = head or sep  # os.path.dirname, without its cost ×10,000: "/a" → "/", "a" → ""
            if parent not in verdicts:
                real = Path(os.path.realpath(parent))
                verdicts[parent] = any(real == a or a in real.parents for a in self.allowed)
            if not verdicts[parent]:
                raise WriteError("refusing to write outside the project and its image folders", path=path)

    def apply(self, label: str, changes: Sequence[Change], *, wait: float | None = None) -> Outcome | None:
        """Journal then write ``changes``; a file that no longer holds ``before`` is left alone.

        Waits up to ``wait`` seconds for another writer (default: :func:`writelock.default_wait`).
        """
        changes = [c for c in changes if c.before != c.after]
        if not changes:
            return None
        self._check_allowed(c.path for c in changes)
        with self.lock.hold(wait, label):
            self._recover_locked()
            rows: list[Row] = []
            texts: dict[int, bytes] = {}
            items: list[Swap] = []
            for change in changes:
                before, after = _enc(change.before), _enc(change.after)
                hashes = []
                for data in (before, after):
                    h = None if data is None else text_hash(data)
                    if h is not None:
                        texts[h] = data
                    hashes.append(h)
                rows.append((self._rel(change.path), hashes[0], hashes[1]))
                items.append(Swap(os.fspath(change.path), before, after))
            return self._run("edit", None, label, rows, texts, items)

    def undo(self, *, wait: float | None = None) -> Outcome | None:
        """Restore the files of the last edit (those changed elsewhere since are left alone)."""
        return self._move(undo=True, wait=wait)

    def redo(self, *, wait: float | None = None) -> Outcome | None:
        return self._move(undo=False, wait=wait)

    def _move(self, *, undo: bool, wait: float | None) -> Outcome | None:
        kind = "undo" if undo else "redo"
        with self.lock.hold(wait, kind):
            self._recover_locked()
            stack = self._done if undo else self._undone
            if not stack:
                return None
            entry = stack[-1]
            rows = [(p, a, b) for p, b, a in self.store.rows(entry.state_op)]  # back the way it came
            texts = self.store.texts(h for _, b, a in rows for h in (b, a))
            items = [Swap(self._abs(p), None if b is None else texts[b], None if a is None else texts[a])
                     for p, b, a in rows]
            return self._run(kind, entry.seq, entry.label, rows, {}, items)

    def _run(self, kind: str, target: int | None, label: str, rows: list[Row], texts: dict[int, bytes],
             items: list[Swap]) -> Outcome:
        """Intent, swaps, done: the protocol every operation follows (the lock is held)."""
        seq = self.store.begin(uuid.uuid4().hex[:12], kind, target, label, self.clock(), rows, texts)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = swap_many(items, str(self.tmp_dir))
        except WriteError:
            self.store.finish(seq, [], aborted=True)  # nothing was replaced
            self.refresh()
            raise
        left = tuple((Path(p), why) for p, why in result.left_alone)
        # an edit that wrote nothing leaves no trace; an undo/redo blocked only by outside changes
        # still moves on (its edit has been superseded), one blocked by a fixable error does not
        aborted = not result.written and (kind == "edit" or any(why != CHANGED_ELSEWHERE for _, why in left))
        self.store.finish(seq, [self._rel(p) for p, _ in left], aborted=aborted)
        self._trim()
        self.refresh()
        after = {item.path: row[2] for item, row in zip(items, rows)}
        wrote = tuple((Path(p), after.get(p)) for p in result.written)
        return Outcome(kind, label, len(result.written), left, applied=not aborted, wrote=wrote, seq=seq)

    def combine(self, seqs: Sequence[int], label: str, *, wait: float | None = None) -> int:
        """Make the edits ``seqs`` (written piecemeal by one task, e.g. a captioning run) one undo step.

        Only edits still applied as written (never undone) are combined; the others stay separate
        steps. The combined edit takes the place of the first one, each file keeping its first
        "before" and its last "after". Returns how many edits were folded into one.
        """
        with self.lock.hold(wait, label):
            self._recover_locked()
            self.refresh()
            mine = sorted({e.seq for e in self._done if e.state_op == e.seq} & set(seqs))
            if mine:
                self.store.merge(mine, label)
            self.refresh()
        return len(mine)

    # -- recovery ---------------------------------------------------------------------------------
    def recover(self, wait: float | None = 0.0) -> str | None:
        """Finish (or drop) operations a crash interrupted; one line saying what was done, or None.

        If another process holds the lock, its operation is not interrupted but running: nothing
        is done (with the default ``wait`` of 0, this never blocks).
        """
        self.refresh()
        if not self.interrupted:
            return None
        try:
            with self.lock.hold(wait, "recovering an interrupted caption edit"):
                lines = self._recover_locked()
        except BusyError:
            return None
        return "; ".join(lines) or None

    def _recover_locked(self) -> list[str]:
        lines = []
        if self.legacy_file.exists():
            lines.append(self._migrate_legacy())
        self.refresh()
        for op in self._pending:
            lines.append(self._finish_interrupted(op))
        if self._pending:
            self.refresh()
        return lines

    def _finish_interrupted(self, op: OpRow) -> str:
        rows = self.store.rows(op.seq)
        texts = self.store.texts(h for _, b, a in rows for h in (b, a))
        finished, todo, left = 0, [], []
        for p, hb, ha in rows:
            before, after = (None if hb is None else texts[hb]), (None if ha is None else texts[ha])
            try:
                current = read_current(self._abs(p))
            except OSError as exc:
                left.append((p, f"cannot read: {exc.strerror or exc}"))
                continue
            if current == after:
                finished += 1
            elif current == before:
                todo.append(Swap(self._abs(p), before, after))
            else:
                left.append((p, CHANGED_ELSEWHERE))
        what = f"edit '{op.label}'" if op.kind == "edit" else f"{op.kind} of '{op.label}'"
        if not finished:  # nothing had changed yet: drop it (no file is touched)
            self.store.finish(op.seq, [], aborted=True)
            return f"dropped an interrupted {what} (no caption had changed yet){self._sweep(rows)}"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        result = swap_many(todo, str(self.tmp_dir))
        left += [(self._rel(p), why) for p, why in result.left_alone]
        self.store.finish(op.seq, [p for p, _ in left])
        outcome = Outcome(op.kind, op.label, finished + len(result.written),
                          tuple((Path(self._abs(p)), why) for p, why in left), applied=True)
        note = outcome.report(self.root)
        return (f"recovered an interrupted {what}: {outcome.written} captions finished"
                + (f"; {note}" if note else "") + self._sweep(rows))

    def _sweep(self, rows: Iterable[Row]) -> str:
        """Delete our temporaries: all in the journal's folder (we hold the lock), dead ones elsewhere."""
        removed = remove_leftover_tmps(self.tmp_dir, include_live=True)
        for folder in {os.path.dirname(self._abs(p)) for p, _, _ in rows}:
            removed += remove_leftover_tmps(folder)
        return f"; {removed} temporary files removed" if removed else ""

    def _migrate_legacy(self) -> str:
        """Move a 0.1 ``journal.jsonl`` into the database (one transaction), then delete it."""
        history = journal_legacy.read_legacy(self.legacy_file)
        ops = []
        for entry in [*history.done, *reversed(history.undone)]:
            rows, texts = [], {}
            for path, before, after in entry.changes:
                hashes = []
                for text in (before, after):
                    data = _enc(text)
                    hashes.append(None if data is None else text_hash(data))
                    if data is not None:
                        texts[hashes[-1]] = data
                rows.append((path, hashes[0], hashes[1]))
            ops.append((entry, rows, texts))
        undone_ids = [e.id for e in history.undone]
        self.store.import_ops(ops, undone_ids)
        rows_all = [r for _, rows, _ in ops for r in rows]
        swept = self._sweep(rows_all)
        self.legacy_file.unlink()
        self.refresh()
        return f"moved the caption history to {self.store.file} ({len(ops)} edits){swept}"

    # -- size ---------------------------------------------------------------------------------------
    def _trim(self) -> None:
        """Keep the journal under its size and age caps (oldest operations first, never the last few)."""
        try:
            size = self.store.file.stat().st_size
        except OSError:
            return
        ops = self.store.ops()
        now = self.clock()
        if size <= self.limits.max_bytes and (not ops or now - ops[0].t <= self.limits.max_age_s):
            return
        victims = plan_trim(ops, self.limits, now, size)
        if victims:
            self.store.drop(victims)

    def forget(self, *, wait: float | None = None) -> None:
        """Drop the history (files stay as they are)."""
        clear_journal(self.root, wait=wait, lock=self.lock)
        self.refresh()


def clear_journal(root: Path, *, wait: float | None = None, lock: WriteLock | None = None) -> None:
    """Remove a project's caption history, even one too damaged to load, and our temporaries."""
    state_dir = Path(root) / STATE_DIR
    lock = lock or WriteLock(state_dir)
    with lock.hold(wait, "clearing the caption history"):
        Store(state_dir).clear()
        legacy = state_dir / journal_legacy.LEGACY_NAME
        try:
            if legacy.is_dir():
                shutil.rmtree(legacy)
            elif legacy.exists() or legacy.is_symlink():
                legacy.unlink()
        except OSError as exc:
            raise JournalError(f"cannot remove the journal: {exc.strerror or exc}", path=legacy) from None
        remove_leftover_tmps(state_dir / TMP_DIR, include_live=True)

"""Caption writes from the dataset screen that never freeze it, and never drop an edit.

Every caption write holds the project's write lock (core). The editor's saves only *try* it: if a
bulk edit, an undo or another program holds it, the text stays in the editor, the status bar says
who is writing, and the save is retried on the next autosave tick. Undo, redo and bulk edits run in
a worker thread that waits for the lock the usual few seconds, with the status bar saying so.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work

from lora_tui.core.errors import BusyError, LoraTuiError
from lora_tui.core.journal import Outcome

WriteFn = Callable[[float | None], "Outcome | None"]


class JournalWrites:
    """Mixed into DatasetScreen (expects journal, project, image_list, notify, _status, _reload,
    _save_current)."""

    writing: str | None = None  # an undo/redo/bulk edit in progress (status bar)
    save_waiting: str | None = None  # why the editor's text is not saved yet (status bar)

    def busy_label(self) -> str:
        parts = []
        if self.save_waiting:
            parts.append(f"not saved yet: {self.save_waiting}")
        if self.writing:
            parts.append(self.writing)
        return "".join(f" · {p}" for p in parts)

    def save_blocked(self, exc: BusyError) -> None:
        """The lock is held elsewhere: keep the edit, say so once, retry on the next autosave."""
        first = self.save_waiting is None
        self.save_waiting = exc.message
        if first:
            self.notify(f"{exc.message}; your edit is kept and saves as soon as it has finished",
                        severity="warning", markup=False, timeout=6)
        self._status()

    def save_unblocked(self) -> None:
        if self.save_waiting is not None:
            self.save_waiting = None
            self._status()

    # -- undo / redo / bulk edits in a worker -------------------------------------------------------
    def action_undo(self) -> None:
        self._journal_move(undo=True)

    def action_redo(self) -> None:
        self._journal_move(undo=False)

    def _journal_move(self, *, undo: bool) -> None:
        self._save_current()
        word = "undo" if undo else "redo"

        def move(wait: float | None) -> Outcome | None:
            return self.journal.undo(wait=wait) if undo else self.journal.redo(wait=wait)

        def done(outcome: Outcome | None) -> None:
            if outcome is None:
                self.notify(f"nothing to {word}", timeout=2)
                return
            verb = "undid" if undo else "redid"
            text = f"{verb}: {outcome.label} ({outcome.written} files)" if outcome.applied else \
                f"{word} not done: {outcome.label}"
            self.tell(text, outcome)
            self._reload(self.image_list.cursor)

        self.run_write(f"{word}ing…", move, done)

    def tell(self, text: str, outcome: Outcome) -> None:
        """Notify what an operation did, and name every caption it left alone."""
        note = outcome.report(self.project.root)
        if note:
            self.notify(f"{text}; {note}", severity="warning", markup=False, timeout=15)
        else:
            self.notify(text, markup=False)

    def run_write(self, doing: str, fn: WriteFn, done: Callable[[Outcome | None], None]) -> None:
        """Run ``fn(wait)`` in a worker; ``done(outcome)`` back on the UI thread."""
        self.writing = doing
        self._status()
        self._write_worker(doing, fn, done)

    @work(thread=True, group="journal", exit_on_error=False)
    def _write_worker(self, doing: str, fn: WriteFn, done: Callable[[Outcome | None], None]) -> None:
        try:
            try:
                outcome = fn(0.0)
            except BusyError as exc:
                self.app.call_from_thread(self._writing, f"{doing} waiting: {exc.message}")
                outcome = fn(None)
        except LoraTuiError as exc:
            self.app.call_from_thread(self._write_failed, exc)
            return
        self.app.call_from_thread(self._write_done, outcome, done)

    def _writing(self, text: str | None) -> None:
        self.writing = text
        self._status()

    def _write_done(self, outcome: Outcome | None, done: Callable[[Outcome | None], None]) -> None:
        self._writing(None)
        done(outcome)

    def _write_failed(self, exc: LoraTuiError) -> None:
        self._writing(None)
        self.notify(str(exc), severity="error", markup=False, timeout=10)

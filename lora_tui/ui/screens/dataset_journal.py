"""Caption writes from the dataset screen that never freeze it, and never drop an edit.

Every caption write holds the project's write lock (core). The editor's saves only *try* it: if a
bulk edit, an undo or another program holds it, the text stays in the editor, the status bar says
who is writing, and the save is retried on the next autosave tick. Undo, redo and bulk edits run in
a worker thread that waits for the lock the usual few seconds, with the status bar saying so; when
one finishes, :class:`JournalWriter.Written` is posted to the screen with the files it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message

from lora_tui.core.errors import BusyError, LoraTuiError
from lora_tui.core.journal import Journal, Outcome

WriteFn = Callable[[float | None], "Outcome | None"]


class JournalWriter:
    """Runs undo, redo and bulk edits off the UI thread and keeps the status bar's "busy" words.

    ``host`` is the screen: it runs the worker, shows notifications and receives the messages.
    """

    @dataclass
    class Written(Message):
        """A journal operation finished (``outcome`` None: there was nothing to do)."""

        doing: str
        outcome: Outcome | None
        then: Callable[[Outcome | None], None] | None = None

    @dataclass
    class BusyChanged(Message):
        """The status bar's busy words changed."""

    def __init__(self, host: Any, journal: Journal,
                 expect: Callable[[Iterable[tuple[Path, int | None]]], None] | None = None) -> None:
        self.host = host
        self.journal = journal
        self.expect = expect  # told what was written as soon as it is, from the worker (the watcher)
        self.writing: str | None = None  # an undo/redo/bulk edit in progress (status bar)
        self.save_waiting: str | None = None  # why the editor's text is not saved yet (status bar)
        self.saving = False  # the editor's text is being written (on the UI thread)

    @property
    def busy(self) -> bool:
        """A write of ours is under way: the folder watcher holds its verdict until it is done."""
        return self.saving or self.writing is not None

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
            self.host.notify(f"{exc.message}; your edit is kept and saves as soon as it has finished",
                             severity="warning", markup=False, timeout=6)
        self.host.post_message(self.BusyChanged())

    def save_unblocked(self) -> None:
        if self.save_waiting is not None:
            self.save_waiting = None
            self.host.post_message(self.BusyChanged())

    def undo(self) -> None:
        self.run("undoing…", lambda wait: self.journal.undo(wait=wait))

    def redo(self) -> None:
        self.run("redoing…", lambda wait: self.journal.redo(wait=wait))

    def run(self, doing: str, fn: WriteFn, then: Callable[[Outcome | None], None] | None = None) -> None:
        """Run ``fn(wait)`` in a worker; :class:`Written` comes back to the screen."""
        self._set_writing(doing)
        self.host.run_worker(lambda: self._work(doing, fn, then), thread=True, group="journal",
                             exit_on_error=False)

    def _work(self, doing: str, fn: WriteFn, then: Callable[[Outcome | None], None] | None) -> None:
        try:
            try:
                outcome = fn(0.0)
            except BusyError as exc:
                self.host.app.call_from_thread(self._set_writing, f"{doing} waiting: {exc.message}")
                outcome = fn(None)
        except LoraTuiError as exc:
            self.host.app.call_from_thread(self._failed, exc)
            return
        if outcome is not None and self.expect is not None:
            self.expect(outcome.wrote)
        self.host.app.call_from_thread(self._finished, doing, outcome, then)

    def _set_writing(self, text: str | None) -> None:
        self.writing = text
        self.host.post_message(self.BusyChanged())

    def _finished(self, doing: str, outcome: Outcome | None, then: Callable[[Outcome | None], None] | None) -> None:
        self._set_writing(None)
        self.host.post_message(self.Written(doing, outcome, then))

    def _failed(self, exc: LoraTuiError) -> None:
        self._set_writing(None)
        self.host.notify(str(exc), severity="error", markup=False, timeout=10)

    def tell(self, text: str, outcome: Outcome, root: Any) -> None:
        """Notify what an operation did, and name every caption it left alone."""
        note = outcome.report(root)
        if note:
            self.host.notify(f"{text}; {note}", severity="warning", markup=False, timeout=15)
        else:
            self.host.notify(text, markup=False)

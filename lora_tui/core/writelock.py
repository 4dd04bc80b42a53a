"""One caption writer at a time per project: an OS file lock in ``.lora-tui/write.lock``.

Every caption write (bulk edits, the editor's saves, undo/redo, recovery) holds the lock from
reading the files to journaling the result, so two writers can never interleave and lose an edit.
It is an ``flock`` on an open file: the kernel drops it when the holder exits, kill -9 included, so
a crash never leaves a stale lock behind. The holder writes who it is (pid, command, since) into the
file, so a waiter that gives up can say who holds it.

A lock is taken per acquisition on its own open file, so two threads of one process exclude each
other like two processes do; :class:`WriteLock` is re-entrant within one thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lora_tui.core.errors import BusyError, JournalError

LOCK_NAME = "write.lock"
DEFAULT_WAIT_S = 5.0
POLL_S = 0.02


def default_wait() -> float:
    """Seconds a writer waits for the lock: ``LORA_TUI_LOCK_WAIT`` if set, else 5."""
    raw = os.environ.get("LORA_TUI_LOCK_WAIT", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_WAIT_S
    except ValueError:
        return DEFAULT_WAIT_S


def this_command() -> str:
    """How this process was started, as a user would recognise it in a "held by" message."""
    argv = sys.argv[1:]
    return "lora-tui " + " ".join(argv) if argv else "lora-tui"


def describe_holder(file: Path) -> str:
    """"`lora-tui captions … add A` (pid 1234) since 12:03:04", or a generic phrase if unknown."""
    for _ in range(3):  # the holder may be rewriting it this very moment
        try:
            info = json.loads(file.read_text("utf-8"))
            since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
            return f"`{info['command']}` (pid {int(info['pid'])}) since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(POLL_S)
    return "another lora-tui process"


class WriteLock:
    """The project's caption write lock; use ``with lock.hold(wait):`` around a whole operation."""

    def __init__(self, state_dir: Path, command: str | None = None, *, name: str = LOCK_NAME,
                 subject: str = "captions") -> None:
        self.file = Path(state_dir) / name
        self.subject = subject  # what the lock guards, for the "… are being written by" message
        self.command = command or this_command()
        self._local = threading.local()

    @property
    def held(self) -> bool:
        """True if this thread holds the lock."""
        return getattr(self._local, "depth", 0) > 0

    @contextlib.contextmanager
    def hold(self, wait: float | None = None, what: str = "") -> Iterator[None]:
        """Hold the lock for the block; waits up to ``wait`` seconds, then :class:`BusyError`.

        ``what`` is added to the command shown to waiters (e.g. the edit being applied).
        """
        if self.held:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        fd = self._acquire(default_wait() if wait is None else wait, what)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            os.close(fd)  # releases the flock

    def try_hold(self) -> contextlib.AbstractContextManager[None]:
        """:meth:`hold` without waiting (for a UI that must not freeze)."""
        return self.hold(0.0)

    def _acquire(self, wait: float, what: str) -> int:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open the write lock: {exc.strerror or exc}", path=self.file,
                               hint="check that the project's .lora-tui folder is writable") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise BusyError(f"{self.subject} are being written by {describe_holder(self.file)}",
                                    path=self.file.parent.parent,
                                    hint="try again when it has finished") from None
                time.sleep(POLL_S)
            except OSError as exc:
                os.close(fd)
                raise JournalError(f"cannot lock: {exc.strerror or exc}", path=self.file,
                                   hint="a file system without file locks cannot hold lora-tui's state") from None
        info = json.dumps({"pid": os.getpid(), "command": self.command + (f": {what}" if what else ""),
                           "since": time.time()}, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        return fd

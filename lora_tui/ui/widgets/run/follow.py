"""Knowing when a run's files changed: watchdog when it works, a slow poll always.

watchdog (inotify on Linux) sets a flag from its own thread; the screen's timer looks at the flag
and reads the new lines only then, so a quiet run costs nothing and a busy one is read once per
tick however many lines it wrote. Where watchdog cannot watch (a network filesystem, no inotify
left), the timer still reads every ``POLL_S`` seconds: slower, never stale for long.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

POLL_S = 3.0


class ChangeFlag:
    """A run folder's "something was written" flag (watchdog-set), with a polling fallback."""

    def __init__(self, folder: Path, poll_s: float = POLL_S) -> None:
        self.folder = Path(folder)
        self.poll_s = poll_s
        self._flag = threading.Event()
        self._flag.set()  # read once at the start
        self._last = 0.0
        self.observer = None
        self.watching = False

    def start(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            flag = self._flag

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event: object) -> None:
                    if getattr(event, "event_type", "") not in ("opened", "closed_no_write"):
                        flag.set()

            observer = Observer()
            observer.daemon = True
            observer.schedule(_Handler(), str(self.folder), recursive=False)
            observer.start()
            self.observer, self.watching = observer, True
        except Exception:  # no inotify watches left, a folder that vanished: poll instead
            self.observer, self.watching = None, False

    def stop(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
            self.observer = None

    def due(self) -> bool:
        """Whether to read now: something was written, or the poll interval passed."""
        now = time.monotonic()
        if self._flag.is_set() or now - self._last >= self.poll_s:
            self._flag.clear()
            self._last = now
            return True
        return False

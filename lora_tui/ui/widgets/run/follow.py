"""Knowing when a run's files changed: watchdog while the run is quiet, polling while it is busy.

watchdog (inotify on Linux) sets a flag from its own thread; the screen's timer reads the new lines
only when the flag is up (or every ``POLL_S`` seconds regardless, for filesystems where watchdog
sees nothing, such as NFS). A quiet or ended run then costs nothing to watch.

A busy run is different: a trainer writing 20 lines a second to events.jsonl and train.log makes
~40 inotify events a second, and watchdog's machinery for them cost 0.9 % of a core (measured in
bench/bench_run_screens.py) to learn what the timer would learn anyway: that there is news at every
tick. So after ``BUSY_READS`` reads in a row that found new lines the watcher is stopped and every
tick reads (one read() of the new bytes); after ``QUIET_READS`` reads that found nothing it is
started again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

POLL_S = 3.0
BUSY_READS = 3
QUIET_READS = 5


class ChangeFlag:
    """A run folder's "something was written" flag, watchdog-set while quiet, polled while busy."""

    def __init__(self, folder: Path, poll_s: float = POLL_S, use_watchdog: bool = True) -> None:
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.use_watchdog = use_watchdog
        self._flag = threading.Event()
        self._flag.set()  # read once at the start
        self._last = 0.0
        self._busy = self._quiet = 0
        self.observer: Any = None

    @property
    def watching(self) -> bool:
        return self.observer is not None

    def start(self) -> None:
        if not self.use_watchdog or self.observer is not None:
            return
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
            self.observer = observer
        except Exception:  # no inotify watches left, a folder that vanished: poll instead
            self.observer, self.use_watchdog = None, False

    def stop(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
            self.observer = None

    def trigger(self) -> None:
        """Read at the next tick (after we changed something ourselves, e.g. asked the run to stop)."""
        self._flag.set()

    def due(self) -> bool:
        """Whether to read now: no watcher (busy, or none to be had), a change seen, or the poll interval passed."""
        now = time.monotonic()
        if self.observer is None or self._flag.is_set() or now - self._last >= self.poll_s:
            self._flag.clear()
            self._last = now
            return True
        return False

    def read_result(self, found_news: bool) -> None:
        """What the read that ``due`` allowed found; switches between watching and polling."""
        if found_news:
            self._busy, self._quiet = self._busy + 1, 0
            if self.observer is not None and self._busy >= BUSY_READS:
                self.stop()
        else:
            self._busy, self._quiet = 0, self._quiet + 1
            if self.observer is None and self._quiet >= QUIET_READS:
                self.start()

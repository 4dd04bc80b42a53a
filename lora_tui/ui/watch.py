"""Noticing files added, removed or edited by something else (another editor, an auto-captioner).

watchdog watches each image folder (non-recursively) from its own thread; events are coalesced
and handed to the UI as one callback per burst, never one per file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

SETTLE_SECONDS = 0.3


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self.watcher.touch(Path(str(raw)))


class FolderWatcher:
    """Calls ``on_change(paths)`` (from a background thread) after a burst of changes settles.

    ``ignore(path)`` drops a path from the burst (this program's own writes); it runs in the
    watcher's thread once the burst has settled, so it may read the file.
    """

    def __init__(self, folders: Iterable[Path], on_change: Callable[[set[Path]], None],
                 ignore: Callable[[Path], bool] | None = None, defer: Callable[[], bool] | None = None) -> None:
        self.on_change = on_change
        self.ignore = ignore or (lambda _: False)
        self.defer = defer or (lambda: False)  # True while this program is writing: judge the burst after
        self._pending: set[Path] = set()
        self._last = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.observer = Observer()
        handler = _Handler(self)
        for folder in {Path(f) for f in folders}:
            if folder.is_dir():
                self.observer.schedule(handler, str(folder), recursive=False)
        self._flusher = threading.Thread(target=self._flush_loop, name="lora-tui-watch", daemon=True)

    def start(self) -> None:
        self.observer.start()
        self._flusher.start()

    def stop(self) -> None:
        self._stop.set()
        self.observer.stop()

    def touch(self, path: Path) -> None:
        if path.name.startswith("."):
            return  # our own temporaries
        with self._lock:
            self._pending.add(path)
            self._last = time.monotonic()

    def _flush_loop(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                if not self._pending or time.monotonic() - self._last < SETTLE_SECONDS or self.defer():
                    continue
                batch, self._pending = self._pending, set()
            # once the burst has settled, so a writer has finished and said what it wrote
            batch = {p for p in batch if not self.ignore(p)}
            if batch:
                self.on_change(batch)

"""Loading the dataset screen's index: the listing first, every caption behind it.

The screen is usable as soon as the folders are listed (:class:`IndexLoader.Listed`); the captions
are then read a few milliseconds per UI tick (a background thread doing 10,000 small reads would
hold the GIL so often that keys wait), and :class:`IndexLoader.CaptionsRead` brings the completion
vocabulary once they are all in.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from lora_tui.core import scan
from lora_tui.core.dataset_index import DatasetIndex
from lora_tui.core.project import Project
from lora_tui.core.review import ReviewMarks
from lora_tui.core.tag_complete import TagVocabulary
from lora_tui.ui.gc_pause import Hold

CAPTION_SLICE_S = 0.004  # caption reading per UI tick while the list is already usable
QUICK_LISTING_S = 0.15  # how long the screen waits for the listing before its first frame


class IndexLoader:
    """``host``: the screen (runs the workers, receives the messages, ``index`` is its current index)."""

    @dataclass
    class Listed(Message):
        """Every image is listed; captions show "…" until read."""

        index: DatasetIndex

    @dataclass
    class CaptionsRead(Message):
        index: DatasetIndex
        vocabulary: TagVocabulary

    def __init__(self, host: Any, marks: ReviewMarks) -> None:
        self.host = host
        self.marks = marks
        self._listing: Future[DatasetIndex] = Future()
        self.gc_hold: Hold | None = None

    def prefetch(self, proj: Project) -> None:
        """Start listing the folders now, while the screen is still being built and styled.

        The garbage collector stays off until the listing is on screen (:meth:`opened`): the
        records, rows and widgets built meanwhile hold no garbage, and a full collection in the
        middle of the open only costs time (see :mod:`lora_tui.ui.gc_pause`)."""
        self.gc_hold = Hold()
        threading.Thread(target=self._list, args=(proj,), name="lora-tui-listing", daemon=True).start()

    def _list(self, proj: Project) -> None:
        try:
            scans = scan.scan_project(proj, read_captions=False)
            self._listing.set_result(DatasetIndex(scans, self.marks))
        except BaseException as exc:  # handed to the worker below, which reports it
            self._listing.set_exception(exc)

    def opened(self) -> None:
        """The listing is on screen (or the screen is gone): the collector may run again."""
        if self.gc_hold is not None:
            self.gc_hold.release()

    def start(self) -> DatasetIndex | None:
        """Once mounted: the listing, for the screen's first frame, when it is ready within
        ``QUICK_LISTING_S``; else None, and :class:`Listed` comes when it is. Then the captions are read.

        Waiting here blocks the event loop for at most that long, before anything usable is on
        screen: the keys pressed meanwhile wait in the queue, as they would for the listing. Not
        waiting cost more: the screen painted "scanning…" frames that needed the GIL the listing
        thread needed too, and laid itself out once without rows and once with them.
        """
        try:
            index = self._listing.result(timeout=QUICK_LISTING_S)
        except BaseException:  # slow (a big folder on a network disk), or failed: the worker reports it
            self.host.run_worker(self._deliver, thread=True, exclusive=True, group="scan", exit_on_error=False)
            return None
        self.host.call_later(self._read_captions, index, scan.PendingCaptions(index.scans))
        return index

    def _deliver(self) -> None:
        try:
            index = self._listing.result()
        except BaseException:
            self.opened()
            raise
        self.host.post_message(self.Listed(index))
        self.host.app.call_from_thread(self._read_captions, index, scan.PendingCaptions(index.scans))

    def _read_captions(self, index: DatasetIndex, reader: scan.PendingCaptions) -> None:
        """A few milliseconds of caption reads per tick on the UI thread, so keys never wait long."""
        host = self.host
        if not host.is_mounted or (host.index is not None and index is not host.index):
            return  # closed meanwhile
        if reader.read(CAPTION_SLICE_S):
            host.run_worker(lambda: self._vocabulary(index), thread=True, exclusive=True, group="vocabulary",
                            exit_on_error=False)
        else:
            host.set_timer(0.001, lambda: self._read_captions(index, reader))

    def _vocabulary(self, index: DatasetIndex) -> None:
        self.host.post_message(self.CaptionsRead(index, TagVocabulary(index.tag_counts(index.rows))))

"""Loading the dataset screen's index: the listing first, every caption behind it.

The screen is usable as soon as the folders are listed (:class:`IndexLoader.Listed`); the captions
are then read a few milliseconds per UI tick (a background thread doing 10,000 small reads would
hold the GIL so often that keys wait), and :class:`IndexLoader.CaptionsRead` brings the completion
vocabulary once they are all in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from lora_tui.core import scan
from lora_tui.core.dataset_index import DatasetIndex
from lora_tui.core.review import ReviewMarks
from lora_tui.core.tag_complete import TagVocabulary

CAPTION_SLICE_S = 0.004  # caption reading per UI tick while the list is already usable


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

    def start(self) -> None:
        self.host.run_worker(self._list, thread=True, exclusive=True, group="scan", exit_on_error=False)

    def _list(self) -> None:
        scans = scan.scan_project(self.host.project, read_captions=False)
        index = DatasetIndex(scans, self.marks)
        self.host.post_message(self.Listed(index))
        self.host.app.call_from_thread(self._read_captions, index, scan.PendingCaptions(scans))

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

"""Outside changes on the dataset screen: refresh what others changed, never overwrite silently.

The folder watcher reports files that changed; the ones whose content is what this screen itself
last wrote there (the journal's after-hash) are dropped, whatever the timing. What is left is posted
to the screen as :class:`OutsideChanges.FilesChanged`, and the screen re-reads only those files.

When a caption changes on disk while the user has unsaved edits to it, that image is in conflict:
autosave stops for it and the user chooses: ctrl+o keeps their text (overwriting, journaled and
undoable), ctrl+l loads the text on disk (their edit is dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message

from lora_tui.core.captions import caption_text
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal_store import text_hash
from lora_tui.core.metadata_edit import text_on_disk
from lora_tui.core.scan import caption_target
from lora_tui.ui.watch import FolderWatcher


class OutsideChanges:
    """Owns the watcher, this screen's own writes, and the conflict between an edit and the disk.

    ``host`` is the dataset screen (``row``, ``editor``, ``project``; it handles :class:`FilesChanged`).
    """

    @dataclass
    class FilesChanged(Message):
        """Files in the image folders changed, not by this screen."""

        paths: set[Path]

    def __init__(self, host: Any) -> None:
        self.host = host
        self.conflict_key: str | None = None
        self.pending_edit: tuple[str, str] | None = None  # (row key, unsaved text) kept over a refresh
        self._own: dict[str, int | None] = {}  # path → hash of what we last wrote there (None: deleted)
        self._lock = threading.Lock()
        self._watcher: FolderWatcher | None = None

    # -- watching -------------------------------------------------------------------------------
    def start(self) -> None:
        subsets = self.host.project.subsets
        folders = [s.image_dir for s in subsets if s.image_dir is not None]
        folders += [meta.parent for s in subsets if (meta := s.path("metadata_file")) is not None]
        self._watcher = FolderWatcher(folders, lambda paths: self.host.post_message(self.FilesChanged(paths)),
                                      ignore=self.is_own_write, defer=lambda: self.host.writer.busy)
        try:
            self._watcher.start()
        except OSError as exc:  # e.g. inotify watch limit reached: keep working without live refresh
            self._watcher = None
            self.host.notify(f"not watching for outside changes: {exc}", severity="warning", markup=False)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def expect(self, wrote: Iterable[tuple[Path, int | None]]) -> None:
        """Remember what this screen wrote (path, content hash): those files are not outside changes."""
        with self._lock:
            for path, digest in wrote:
                self._own[str(path)] = digest

    def expect_text(self, path: Path, text: str | None) -> None:
        self.expect([(path, None if text is None else text_hash(text.encode("utf-8")))])

    def expect_file(self, path: Path) -> None:
        """Remember a file as just written (a metadata file: its whole text, not one caption)."""
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        self.expect([(path, None if data is None else text_hash(data))])

    def is_own_write(self, path: Path) -> bool:
        """True if ``path`` holds exactly what we last wrote there (called from the watcher's thread)."""
        key = str(path)
        with self._lock:
            if key not in self._own:
                return False
            expected = self._own[key]
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError:
            return False
        if (None if data is None else text_hash(data)) == expected:
            return True
        with self._lock:  # changed since: from now on it is someone else's
            if self._own.get(key) == expected:
                del self._own[key]
        return False

    # -- conflicts ------------------------------------------------------------------------------
    def check_conflict(self, paths: set[Path]) -> None:
        """Before a refresh: an unsaved edit whose caption changed on disk becomes a conflict."""
        host = self.host
        row, editor = host.row, host.editor
        if row is None or not editor.dirty:
            return
        target = caption_target(row.subset, row.record)
        if target not in paths:
            return
        if row.record.meta_key is not None:  # one entry of a metadata file: only its own text counts
            disk = text_on_disk(row.subset, row.record)
        else:
            try:
                disk = caption_text(target) or ""  # decoded as the editor's text was (BOM, CRLF kept apart)
            except LoraTuiError:
                disk = None
        if disk != editor.loaded_text:
            self.conflict_key = row.key
            host.notify(f"{target.name} was changed outside lora-tui while you edit it: "
                        "ctrl+o keeps your text, ctrl+l loads the one on disk",
                        severity="error", markup=False, timeout=15)

    def in_conflict(self, row: Any) -> bool:
        return row is not None and self.conflict_key == row.key

    def restore_pending_edit(self) -> None:
        """After a refresh: put the unsaved text back into the editor for the same image."""
        host = self.host
        if self.pending_edit and host.row is not None and host.row.key == self.pending_edit[0]:
            text = self.pending_edit[1]
            if text != host.editor.text:
                host.editor.load_text(text)  # loaded_text stays the disk version: still unsaved
            self.pending_edit = None

    def keep_mine(self) -> None:
        """Save the editor text over what is on disk now (the journal keeps theirs for undo)."""
        host = self.host
        if host.row is None and self.conflict_key is not None:
            host.notify("still refreshing from disk; press ctrl+o again in a moment", timeout=3)
            return
        if not self.in_conflict(host.row):
            return
        self.conflict_key = None
        row = host.row
        host.refresh_files({caption_target(row.subset, row.record)}, keep_editor=True)  # theirs is the base
        host.save_current()

    def load_theirs(self) -> None:
        host = self.host
        if self.in_conflict(host.row):
            self.conflict_key = None
            self.pending_edit = None
            host.editor.loaded_text = host.editor.text  # drop the edit, then reload from disk
            row = host.row
            host.refresh_files({caption_target(row.subset, row.record)}, force=True)

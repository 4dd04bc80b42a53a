"""Outside changes on the dataset screen: refresh what others changed, never overwrite silently.

When a caption changes on disk while the user has unsaved edits to it, that image is in conflict:
autosave stops for it and the user chooses: ctrl+o keeps their text (overwriting, journaled and
undoable), ctrl+l loads the text on disk (their edit is dropped).
"""

from __future__ import annotations

import time
from pathlib import Path

from lora_tui.core.caption_edit import current_text
from lora_tui.core.scan import caption_target
from lora_tui.ui.watch import FolderWatcher

OWN_WRITE_SECONDS = 2.0


class OutsideChanges:
    """Mixed into DatasetScreen (expects row, editor, image_list, project, _reload, _save_current)."""

    conflict_key: str | None = None
    _pending_edit: tuple[str, str] | None = None
    _watcher: FolderWatcher | None = None

    def start_watching(self) -> None:
        self._own_writes: dict[str, float] = {}
        folders = [s.image_dir for s in self.project.subsets if s.image_dir is not None]
        self._watcher = FolderWatcher(folders, lambda paths: self.app.call_from_thread(self.files_changed, paths),
                                      ignore=self._is_own_write)
        try:
            self._watcher.start()
        except OSError as exc:  # e.g. inotify watch limit reached: keep working without live refresh
            self._watcher = None
            self.notify(f"not watching for outside changes: {exc}", severity="warning", markup=False)

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def note_own_write(self, path: Path) -> None:
        self._own_writes[str(path)] = time.monotonic()

    def _is_own_write(self, path: Path) -> bool:
        t = self._own_writes.get(str(path))
        return t is not None and time.monotonic() - t < OWN_WRITE_SECONDS

    def files_changed(self, paths: set[Path]) -> None:
        """Rescan; an unsaved edit survives the rescan, and becomes a conflict if its file changed."""

        row = self.row
        if row is not None and self.editor.dirty:
            target = caption_target(row.subset, row.record)
            if target in paths:
                try:
                    disk = target.read_text("utf-8") if target.exists() else ""
                except (OSError, UnicodeDecodeError):
                    disk = None
                if disk != self.editor.loaded_text:
                    self.conflict_key = row.key
                    self.notify(f"{target.name} was changed outside lora-tui while you edit it: "
                                "ctrl+o keeps your text, ctrl+l loads the one on disk",
                                severity="error", markup=False, timeout=15)
            self._pending_edit = (row.key, self.editor.text)
        self._reload(self.image_list.cursor)

    def restore_pending_edit(self) -> None:
        """After a rescan: put the unsaved text back into the editor for the same image."""
        if self._pending_edit and self.row is not None and self.row.key == self._pending_edit[0]:
            text = self._pending_edit[1]
            if text != self.editor.text:
                self.editor.load_text(text)  # loaded_text stays the disk version: still unsaved
            self._pending_edit = None

    def action_keep_mine(self) -> None:
        if self.row is None and self.conflict_key is not None:
            self.notify("still refreshing from disk; press ctrl+o again in a moment", timeout=3)
            return
        if self.row is not None and self.conflict_key == self.row.key:
            self.conflict_key = None
            self._reload_record_then_save()

    def _reload_record_then_save(self) -> None:
        """Save the editor text over what is on disk now (the journal keeps theirs for undo)."""
        from lora_tui.core.captions import read_caption

        row = self.row
        target = caption_target(row.subset, row.record)
        try:
            row.record.caption = read_caption(target) if target.exists() else None
        except Exception as exc:  # unreadable now: report, keep the edit
            self.notify(str(exc), severity="error", markup=False)
            return
        if row.record.caption is not None and row.record.caption_name is None:
            row.record.caption_name = target.name
            row.record.__dict__.pop("caption_path", None)
        self.editor.loaded_text = current_text(row.record)
        self._save_current()
        self._status()

    def action_load_theirs(self) -> None:
        if self.row is not None and self.conflict_key == self.row.key:
            self.conflict_key = None
            self._pending_edit = None
            self.editor.loaded_text = self.editor.text  # drop the edit, then reload from disk
            self._reload(self.image_list.cursor)

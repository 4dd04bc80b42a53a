"""Saving the dataset screen's caption editor: now, through the journal, or on quit, somewhere safe.

Kept apart from the screen because saving is where the edit meets everything else that writes: the
journal (atomic, undoable), another writer holding the lock (:class:`JournalWriter`), and a change on
disk since the edit began (:class:`OutsideChanges`). The screen decides *when* to save (leaving an
image or the editor, a pause in typing, quitting); :class:`CaptionSaver` does the saving.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lora_tui.core.caption_edit import CaptionConflict, current_text, save_caption
from lora_tui.core.errors import BusyError, LoraTuiError
from lora_tui.core.scan import caption_target


class CaptionSaver:
    """Writes the editor's text for the current image. ``host``: the screen (``row``, ``editor``,
    ``journal``, ``outside``, ``writer``, ``project``, ``notify``, ``refresh_files``)."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def save(self, wait: float | None = 0.0) -> bool:
        """Save the editor's text; False (the edit stays in the editor) if it cannot be saved now.

        ``wait`` 0: never block the UI on another writer (autosave retries); quitting waits.
        """
        host = self.host
        editor, row = host.editor, host.row
        if row is None or not editor.dirty:
            return True
        if host.outside.in_conflict(row):
            host.notify("this caption changed on disk while you edited it: ctrl+o keeps yours, ctrl+l loads theirs",
                        severity="warning", markup=False)
            return False
        target = caption_target(row.subset, row.record)
        host.writer.saving = True  # the watcher waits until we have said what we wrote
        try:
            changed = save_caption(host.journal, row.subset, row.record, editor.text, wait=wait)
            if changed:
                host.outside.expect_file(target) if row.record.meta_key is not None \
                    else host.outside.expect_text(target, current_text(row.record))
        except BusyError as exc:
            host.writer.save_blocked(exc)
            return False
        except CaptionConflict:
            host.outside.conflict_key = row.key
            host.notify(f"{row.record.name}: its caption was changed outside lora-tui while you edited it: "
                        "ctrl+o keeps your text, ctrl+l loads the one on disk",
                        severity="error", markup=False, timeout=15)
            return False
        except LoraTuiError as exc:
            host.notify(str(exc), severity="error", markup=False, timeout=8)
            return False
        finally:
            host.writer.saving = False
        host.writer.save_unblocked()
        editor.loaded_text = editor.text
        if changed:
            host.refresh_files([target], keep_editor=True)  # counts and completion follow
        return True

    def save_on_exit(self) -> None:
        """Quitting never loses an edit in progress: it waits for another writer, and what still cannot
        be saved (or conflicts with a change on disk) is kept in .lora-tui/unsaved/; the next start says so.
        No screen updates here: the widgets are going away."""
        host = self.host
        row, editor = host.row, host.editor
        if row is None or not editor.dirty:
            return
        target = caption_target(row.subset, row.record)
        why = "it changed on disk while you edited it"
        if not host.outside.in_conflict(row):
            try:
                host.outside.expect_text(target, editor.text)
                save_caption(host.journal, row.subset, row.record, editor.text, wait=None)
                return
            except (LoraTuiError, OSError) as exc:  # BusyError, CaptionConflict, a read-only file…
                why = str(exc)
        from lora_tui.core import unsaved

        with contextlib.suppress(LoraTuiError, OSError):
            unsaved.stash(host.project.root, target, editor.text, why, entry=row.record.meta_key)

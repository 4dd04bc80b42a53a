"""Dataset screen: image list, preview and caption editor, driven from the keyboard.

Captions save automatically (leaving an image, leaving the editor, after a pause in typing, on
exit) through the core journal, so every edit is atomic and undoable across restarts. Saves never
overwrite a caption changed on disk meanwhile and never wait on another writer (see
:mod:`.dataset_journal`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static, TextArea

from lora_tui.core import scan
from lora_tui.core.caption_edit import CaptionConflict, current_text, save_caption
from lora_tui.core.captions import caption_lines
from lora_tui.core.dataset_index import DatasetIndex, Filter, Row
from lora_tui.core.errors import BusyError, LoraTuiError
from lora_tui.core.journal import Journal
from lora_tui.core.project import Project
from lora_tui.core.review import ReviewMarks
from lora_tui.core.scan import caption_target
from lora_tui.core.tag_complete import TagVocabulary
from lora_tui.ui.actions import ActionScreen
from lora_tui.ui.screens.dataset_actions import DatasetActions
from lora_tui.ui.screens.dataset_chips import CaptionModes
from lora_tui.ui.screens.dataset_journal import JournalWrites
from lora_tui.ui.screens.dataset_table import DATASET_ACTIONS
from lora_tui.ui.screens.dataset_watch import OutsideChanges
from lora_tui.ui.widgets.dataset.caption_editor import CaptionEditor
from lora_tui.ui.widgets.dataset.image_list import ImageList
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from lora_tui.ui.widgets.dataset.tag_chips import TagChips
from lora_tui.ui.widgets.dataset.tag_panel import TagPanel

AUTOSAVE_SECONDS = 1.5
CAPTION_SLICE_S = 0.004  # caption reading per UI tick while the list is already usable


class DatasetScreen(CaptionModes, DatasetActions, OutsideChanges, JournalWrites, ActionScreen):
    BINDING_GROUP_TITLE = "Dataset"
    ACTIONS = DATASET_ACTIONS
    HELP_TABLES = (ImageList.ACTIONS, TagChips.ACTIONS)
    BINDINGS = ACTIONS.bindings()
    DEFAULT_CSS = """
    DatasetScreen #list { width: 45%; min-width: 40; border-right: tall $panel; }
    DatasetScreen #status { height: 1; padding: 0 1; background: $panel; }
    """

    def __init__(self, project: Project, focus: Path | None = None) -> None:
        super().__init__()
        self.project = project
        self.focus_path = focus  # an image, caption or folder to show first (from a lint finding)
        self.marks = ReviewMarks(project.root)
        self.journal = Journal.for_project(project, command="lora-tui (the terminal app)")
        self.index: DatasetIndex | None = None
        self.row: Row | None = None
        self._reverting = False
        self.captions_ready = False
        self._last_typed = 0.0
        # held directly: saving on unmount must not depend on the DOM still being there
        self.image_list = ImageList(self.marks, id="list")
        self.editor = CaptionEditor(id="editor")
        self.preview = ImagePreview(id="preview")
        self.chips = TagChips(id="chips")

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield self.image_list
            with Vertical():
                yield self.preview
                yield self.editor
                yield self.chips
            yield TagPanel(id="tags")
        yield Static("scanning…", id="status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TagPanel).display = False
        self.chips.display = False
        self.title = f"lora-tui · {self.project.name}"
        self.sub_title = "dataset"
        self.image_list.focus()
        self.load_index()
        self.set_interval(AUTOSAVE_SECONDS / 3, self._autosave)
        self.call_after_refresh(self.start_watching)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def load_index(self) -> None:
        """List first (the screen is usable at once), then read every caption behind it.

        Until the captions are in, rows show "…", the current image's caption is read on demand,
        and bulk edits read what they touch; then filters, counts and completion become exact.
        """
        scans = scan.scan_project(self.project, read_captions=False)
        index = DatasetIndex(scans, self.marks)
        self.app.call_from_thread(self._show_index, index)
        self.app.call_from_thread(self._read_captions, index, scan.PendingCaptions(scans))

    def _read_captions(self, index: DatasetIndex, reader: scan.PendingCaptions) -> None:
        """A few milliseconds of caption reads per tick on the UI thread, so keys never wait long."""
        if index is not self.index or not self.is_mounted:
            return  # rescanned or closed meanwhile
        if reader.read(CAPTION_SLICE_S):
            self._build_vocabulary(index)
        else:
            self.set_timer(0.001, lambda: self._read_captions(index, reader))

    @work(thread=True, exclusive=True, group="vocabulary", exit_on_error=False)
    def _build_vocabulary(self, index: DatasetIndex) -> None:
        vocabulary = TagVocabulary(index.tag_counts(index.rows))
        self.app.call_from_thread(self._captions_loaded, index, vocabulary)

    def _captions_loaded(self, index: DatasetIndex, vocabulary: TagVocabulary) -> None:
        if index is not self.index:
            return  # rescanned meanwhile: that scan read everything itself
        self.captions_ready = True
        self.editor.vocabulary = vocabulary
        for row in index.rows:
            row.forget_text()
        flt = index.filter
        if flt != Filter():  # text, tag, state and caption-order filters need the captions
            current = self.row
            rows = index.apply(flt)
            self.image_list.set_rows(rows, rows.index(current) if current in rows else 0)
        self.image_list.refresh()
        self._refresh_tags()
        self._status()

    def _show_index(self, index: DatasetIndex) -> None:
        self.index = index
        flt, cursor = Filter(), 0
        focus = self.focus_path
        if focus is not None:
            for i, row in enumerate(index.rows):
                if focus in (row.record.path, row.record.caption_path):
                    cursor = i
                    break
                if focus == row.subset.image_dir:
                    flt = Filter(subset=f"{row.subset.dataset_index}.{row.subset.index}")
                    break
        self.image_list.set_rows(index.apply(flt), cursor)
        self._status()

    # -- current image ---------------------------------------------------------------------
    @on(ImageList.Highlighted)
    def _highlighted(self, message: ImageList.Highlighted) -> None:
        if message.row is not None and message.row is self.row:
            return  # the same image again (cursor re-set): keep the editor, and any unsaved text, as is
        if self.row is not None and not self._save_current():
            if not self._reverting and self.row in self.image_list.rows:  # keep the unsaved edit on screen
                self._reverting = True
                self.image_list.cursor = self.image_list.rows.index(self.row)
                self._reverting = False
            return
        self.row = message.row
        editor = self.editor
        if self.row is None:
            editor.load_caption("", "")
            self.preview.show(None)
            return
        record = self.row.record
        fallback = "" if record.caption is not None else f"  (no caption file: trains on "\
                   f"'{self.row.subset.get('class_tokens') or ''}')"
        editor.load_caption(current_text(record), f"{record.name}{fallback}", self.separator())
        editor.read_only = record.meta_caption is not None or record.caption_error is not None
        if self.chip_mode and (editor.read_only or len(caption_lines(editor.text)) > 1):
            self._chip_mode(False)  # this caption cannot be chips: back to text
            self.notify("this caption is edited as text (several lines or read-only)", timeout=3)
        self.sync_chips()
        rows, i = self.image_list.rows, self.image_list.cursor
        self.preview.show(record.path, tuple(rows[j].record.path for j in (i + 1, i - 1) if 0 <= j < len(rows)))
        self.restore_pending_edit()
        self._status()

    def _save_current(self, wait: float | None = 0.0) -> bool:
        """Save the editor's text; False (the edit stays in the editor) if it cannot be saved now.

        ``wait`` 0: never block the UI on another writer (autosave retries); quitting waits.
        """
        editor = self.editor
        if self.row is None or not editor.dirty:
            return True
        if self.conflict_key == self.row.key:
            self.notify("this caption changed on disk while you edited it: ctrl+o keeps yours, ctrl+l loads theirs",
                        severity="warning", markup=False)
            return False
        self.note_own_write(caption_target(self.row.subset, self.row.record))
        try:
            changed = save_caption(self.journal, self.row.subset, self.row.record, editor.text, wait=wait)
        except BusyError as exc:
            self.save_blocked(exc)
            return False
        except CaptionConflict:
            self.conflict_key = self.row.key
            self.notify(f"{self.row.record.name}: its caption was changed outside lora-tui while you edited it: "
                        "ctrl+o keeps your text, ctrl+l loads the one on disk",
                        severity="error", markup=False, timeout=15)
            return False
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False, timeout=8)
            return False
        self.save_unblocked()
        editor.loaded_text = editor.text
        if changed:
            self.row.forget_text()
            self.image_list.refresh()
        return True

    def _autosave(self) -> None:
        """Save after a pause in typing, not in the middle of a word: each save is one undo step."""
        if time.monotonic() - self._last_typed >= AUTOSAVE_SECONDS:
            self._save_current()

    @on(TextArea.Changed)
    def _typed(self) -> None:
        self._last_typed = time.monotonic()
        self._status()

    def _status(self) -> None:
        if self.index is None:
            return
        reviewed, total = self.index.progress()
        dirty = " · unsaved" if self.editor.dirty and not self.save_waiting else ""
        dirty += self.busy_label()
        if not self.captions_ready:
            dirty += " · reading captions…"
        cursor = self.image_list.cursor + 1 if self.index.view else 0
        self.query_one("#status", Static).update(
            f"{cursor}/{total} · {reviewed}/{total} reviewed{self.filter_label()}{dirty}")

    # -- actions ----------------------------------------------------------------------------
    def action_edit(self) -> None:
        (self.chips if self.chip_mode else self.editor).focus()

    def action_escape(self) -> None:
        """Leave the editor (saving), or else clear the filter."""
        if self.editor.has_focus or self.chips.has_focus:
            self._save_current()
            self.image_list.focus()
        elif self.query_one(TagPanel).has_focus:
            self.image_list.focus()
        else:
            self.action_clear_filter()


    def action_step(self, delta: int) -> None:
        if self.row is None and self._pending_edit is not None:
            return  # refreshing from disk with an unsaved edit: stay on its image
        if self._save_current():
            self.image_list.action_move(delta)

    def action_mark(self, mark: str) -> None:
        if self.row is None:
            return
        on_ = self.marks.toggle(self.row.key, mark)
        self.image_list.refresh()
        self._status()
        self.notify(f"{self.row.record.name}: {mark}" if on_ else f"{self.row.record.name}: not {mark}",
                    markup=False, timeout=2)

    def action_review_next(self) -> None:
        if self.row is None or not self._save_current():
            return
        if not self.marks.has(self.row.key, "reviewed"):
            self.marks.set([self.row.key], "reviewed", True)
        self.action_next_unreviewed()

    def action_next_unreviewed(self) -> None:
        image_list = self.image_list
        rows = image_list.rows
        for offset in range(1, len(rows) + 1):
            i = (image_list.cursor + offset) % len(rows)
            if not self.marks.has(rows[i].key, "reviewed"):
                image_list.cursor = i
                return
        image_list.refresh()
        self._status()
        self.notify("every image here is reviewed", timeout=3)

    def _reload(self, cursor: int) -> None:
        """Rescan after files changed on disk, keeping the filter and the cursor."""
        if self.row is not None and self.editor.dirty and self._pending_edit is None:
            self._pending_edit = (self.row.key, self.editor.text)
        self.row = None
        self._rescan(cursor, self.index.filter if self.index else Filter())

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def _rescan(self, cursor: int, flt: Filter) -> None:
        index = DatasetIndex(scan.scan_project(self.project), self.marks)
        vocabulary = TagVocabulary(index.tag_counts(index.rows))
        self.app.call_from_thread(self._reshow, index, cursor, flt, vocabulary)

    def _reshow(self, index: DatasetIndex, cursor: int, flt: Filter, vocabulary: TagVocabulary) -> None:
        self.index = index
        self.captions_ready = True
        self.editor.vocabulary = vocabulary
        self.image_list.set_rows(index.apply(flt), cursor)
        self._refresh_tags()
        self._status()

    def on_unmount(self) -> None:
        self._save_on_exit()
        self.stop_watching()

    def _save_on_exit(self) -> None:
        """Quitting never loses an edit in progress: it waits for another writer, and what still cannot
        be saved (or conflicts with a change on disk) is kept in .lora-tui/unsaved/; the next start says so.
        No screen updates here: the widgets are going away."""
        row, editor = self.row, self.editor
        if row is None or not editor.dirty:
            return
        target = caption_target(row.subset, row.record)
        why = "it changed on disk while you edited it"
        if self.conflict_key != row.key:
            try:
                self.note_own_write(target)
                save_caption(self.journal, row.subset, row.record, editor.text, wait=None)
                return
            except (LoraTuiError, OSError) as exc:  # BusyError, CaptionConflict, a read-only file…
                why = str(exc)
        from lora_tui.core import unsaved

        with contextlib.suppress(LoraTuiError, OSError):
            unsaved.stash(self.project.root, target, editor.text, why)


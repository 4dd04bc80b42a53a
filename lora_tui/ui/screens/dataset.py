"""Dataset screen: image list, preview and caption editor, driven from the keyboard.

The screen wires parts that each own one job: the :class:`ImageList`, :class:`ImagePreview`,
:class:`CaptionPane` and :class:`TagPanel` widgets, and the controllers :class:`Filters`,
:class:`BulkEdits`, :class:`JournalWriter` (undo, redo, bulk writes off the UI thread),
:class:`CaptionSaver` (the editor's saves) and :class:`OutsideChanges` (the folder watcher and edit
conflicts). They talk through messages the screen handles with ``@on``.

Captions save automatically (leaving an image, leaving the editor, after a pause in typing, on
exit) through the core journal, so every edit is atomic and undoable across restarts. Saves never
overwrite a caption changed on disk meanwhile and never wait on another writer. After any write or
outside change only the files concerned are re-read (:meth:`DatasetScreen.refresh_files`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Header, Static, TextArea

from lora_tui.core.caption_edit import current_text
from lora_tui.core.dataset_index import DatasetIndex, Filter, Row
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Journal
from lora_tui.core.project import Project
from lora_tui.core.review import ReviewMarks
from lora_tui.core.tag_complete import TagVocabulary
from lora_tui.ui.actions import ActionScreen
from lora_tui.ui.screens.dataset_actions import BulkEdits, Filters
from lora_tui.ui.screens.dataset_caption import AutoCaption
from lora_tui.ui.screens.dataset_journal import JournalWriter
from lora_tui.ui.screens.dataset_load import IndexLoader
from lora_tui.ui.screens.dataset_save import CaptionSaver
from lora_tui.ui.screens.dataset_table import DATASET_ACTIONS
from lora_tui.ui.screens.dataset_watch import OutsideChanges
from lora_tui.ui.widgets.dataset.caption_pane import CaptionPane
from lora_tui.ui.widgets.dataset.image_list import ImageList
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from lora_tui.ui.widgets.dataset.tag_chips import TagChips
from lora_tui.ui.widgets.dataset.tag_panel import TagPanel
from lora_tui.ui.widgets.footer import Footer

MARK_WAIT_S = 1.0  # a mark key waits this long for another process writing the marks (ms, normally)

AUTOSAVE_SECONDS = 1.5


class DatasetScreen(ActionScreen):
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
        # parts, held directly: saving on unmount must not depend on the DOM still being there
        self.image_list = ImageList(self.marks, id="list")
        self.caption_pane = CaptionPane(id="caption")
        self.editor = self.caption_pane.editor
        self.chips = self.caption_pane.chips
        self.preview = ImagePreview(id="preview")
        self.tag_panel = TagPanel(id="tags")
        self.tag_panel.display = False  # hidden from the start: no second layout after the first one
        self.outside = OutsideChanges(self)
        self.writer = JournalWriter(self, self.journal, expect=self.outside.expect)
        self.saver = CaptionSaver(self)
        self.filters = Filters(self)
        self.bulk = BulkEdits(self)
        self.captioner = AutoCaption(self)  # lora-tui caption in a child process
        self.loader = IndexLoader(self, self.marks)
        self.loader.prefetch(project)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield self.image_list
            with Vertical():
                yield self.preview
                yield self.caption_pane
            yield self.tag_panel
        yield Static("scanning…", id="status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"lora-tui · {self.project.name}"
        self.sub_title = "dataset"
        self.image_list.focus()
        index = self.loader.start()
        if index is not None:  # listed already: the first frame shows it
            self._show_listing(index)
        self.set_interval(AUTOSAVE_SECONDS / 3, self._autosave)
        self.call_after_refresh(self.outside.start)

    # -- state other parts read ----------------------------------------------------------------
    @property
    def writing(self) -> str | None:
        return self.writer.writing

    @property
    def conflict_key(self) -> str | None:
        return self.outside.conflict_key

    @property
    def chip_mode(self) -> bool:
        return self.caption_pane.chip_mode

    # -- loading (IndexLoader lists, then reads the captions) ------------------------------------
    @on(IndexLoader.CaptionsRead)
    def _captions_loaded(self, message: IndexLoader.CaptionsRead) -> None:
        index = message.index
        if index is not self.index:
            return
        vocabulary = message.vocabulary
        self.captions_ready = True
        self.editor.vocabulary = vocabulary
        for row in index.rows:
            row.forget_text()
        if index.filter != Filter():  # text, tag, state and caption-order filters need the captions
            self._show_view(index.apply(index.filter), self.row)
        self.image_list.refresh()
        self.filters.refresh_tags()
        self.update_status()

    @on(IndexLoader.Listed)
    def _show_index(self, message: IndexLoader.Listed) -> None:
        self._show_listing(message.index)

    def _show_listing(self, index: DatasetIndex) -> None:
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
        self.row = self.image_list.current  # its caption in the same frame as the list (the
        self._show_row()                    # Highlighted message from set_rows then finds it shown)
        self.update_status()  # (_show_row does too, but not for an empty list)
        self.call_after_refresh(self.loader.opened)

    def _show_view(self, rows: list[Row], current: Row | None) -> None:
        at = next((i for i, r in enumerate(rows) if current is not None and r.key == current.key), None)
        self.image_list.set_rows(rows, at if at is not None else min(self.image_list.cursor, len(rows) - 1))

    # -- current image ---------------------------------------------------------------------
    @on(ImageList.Highlighted)
    def _highlighted(self, message: ImageList.Highlighted) -> None:
        if message.row is not None and message.row is self.row:
            return  # the same image again (cursor re-set): keep the editor, and any unsaved text, as is
        if message.row is not self.image_list.current:
            return  # stale: the cursor moved on (or the rows were replaced) and a newer message follows
        if self.row is not None and not self.save_current():
            if not self._reverting and self.row in self.image_list.rows:  # keep the unsaved edit on screen
                self._reverting = True
                self.image_list.cursor = self.image_list.rows.index(self.row)
                self._reverting = False
            return
        self.row = message.row
        self._show_row()

    def _show_row(self) -> None:
        if self.row is None:
            self.caption_pane.clear()
            self.preview.show(None)
            return
        record = self.row.record
        subset = self.row.subset
        if record.meta_key is not None:
            fallback = f"  (in {subset.path('metadata_file').name})"  # type: ignore[union-attr]
        else:
            # caption_name, not caption: the listing knows the file exists before its text is read
            fallback = "" if record.caption_name is not None else f"  (no caption file: trains on "\
                       f"'{subset.get('class_tokens') or ''}')"
        separator = subset.get("caption_separator") or ","
        self.caption_pane.load(current_text(record, subset), f"{record.name}{fallback}", separator,
                               read_only=record.caption_error is not None)
        rows, i = self.image_list.rows, self.image_list.cursor
        self.preview.show(record.path, tuple(rows[j].record.path for j in (i + 1, i - 1) if 0 <= j < len(rows)))
        self.outside.restore_pending_edit()
        self.update_status()

    def save_current(self, wait: float | None = 0.0) -> bool:
        """Save the editor's text (:meth:`CaptionSaver.save`); False: the edit stays in the editor."""
        return self.saver.save(wait)

    def _autosave(self) -> None:
        """Save after a pause in typing, not in the middle of a word: each save is one undo step."""
        if time.monotonic() - self._last_typed >= AUTOSAVE_SECONDS:
            self.save_current()

    @on(TextArea.Changed)
    def _typed(self) -> None:
        self._last_typed = time.monotonic()
        self.update_status()

    @on(JournalWriter.BusyChanged)
    def update_status(self) -> None:
        if self.index is None:
            return
        reviewed, total = self.index.progress()
        dirty = " · unsaved" if self.editor.dirty and not self.writer.save_waiting else ""
        dirty += self.writer.busy_label()
        if not self.captions_ready:
            dirty += " · reading captions…"
        cursor = self.image_list.cursor + 1 if self.index.view else 0
        self.query_one("#status", Static).update(
            f"{cursor}/{total} · {reviewed}/{total} reviewed{self.filters.label()}{dirty}")

    # -- incremental refresh -------------------------------------------------------------------
    def refresh_files(self, paths: Iterable[Path], *, keep_editor: bool = False, force: bool = False) -> None:
        """Re-read only ``paths`` and re-render what shows them: rows, tag counts, completion, editor.

        The current image's caption is shown again when it changed on disk, keeping an unsaved edit
        (``keep_editor``: the editor's text stays and the disk text becomes its base; ``force``: the
        disk text replaces it).
        """
        if self.index is None:
            return
        current = self.row
        done = self.index.refresh(paths)
        self._update_vocabulary(done.tags, rebuild=done.tags_changed)
        reread = current is not None and any(r is current for r in done.rows)
        gone = current is not None and done.view_changed and not any(r is current for r in self.index.rows)
        if keep_editor and reread and not gone:
            self.editor.loaded_text = current_text(current.record, current.subset)
        elif reread or gone or (done.view_changed and current is not None):
            if current is not None and self.editor.dirty and not force and self.outside.pending_edit is None:
                self.outside.pending_edit = (current.key, self.editor.text)
            self.row = None  # show it again from disk (the pending edit goes back on top)
            self._show_view(self.index.view, current)
        elif done.view_changed:
            self._show_view(self.index.view, None)
        self.image_list.refresh()
        if done.rows:
            self.filters.refresh_tags()
        self.update_status()

    def _update_vocabulary(self, tags: set[str], *, rebuild: bool) -> None:
        if not self.captions_ready or self.index is None or not (tags or rebuild):
            return
        counts = self.index.tag_counts(self.index.rows)
        if rebuild:
            self.editor.vocabulary = TagVocabulary(counts)
        else:
            for tag in tags:
                self.editor.vocabulary.counts[tag] = counts[tag]

    @on(JournalWriter.Written)
    def _written(self, message: JournalWriter.Written) -> None:
        outcome = message.outcome
        if outcome is not None:
            self.refresh_files([p for p, _ in outcome.wrote] + [p for p, _ in outcome.left_alone])
        if message.then is not None:
            message.then(outcome)
        else:
            self.writer.tell_move(message.doing, outcome, self.project.root)

    @on(OutsideChanges.FilesChanged)
    def _files_changed(self, message: OutsideChanges.FilesChanged) -> None:
        self.outside.check_conflict(message.paths)
        self.refresh_files(message.paths)

    @on(TagPanel.Picked)
    def _tag_picked(self, message: TagPanel.Picked) -> None:
        self.filters.tag(message.tag)

    # -- actions (the table in dataset_table.py binds them) -------------------------------------
    def action_edit(self) -> None:
        self.caption_pane.focus_editing()

    def action_escape(self) -> None:
        """Leave the editor (saving), or else clear the filter."""
        if self.caption_pane.editing:
            self.save_current()
            self.image_list.focus()
        elif self.tag_panel.has_focus:
            self.image_list.focus()
        else:
            self.filters.clear_filter()

    def action_step(self, delta: int) -> None:
        if self.row is None and self.outside.pending_edit is not None:
            return  # refreshing from disk with an unsaved edit: stay on its image
        if self.save_current():
            self.image_list.action_move(delta)

    def action_mark(self, mark: str) -> None:
        if self.row is None:
            return
        try:
            on_ = self.marks.toggle(self.row.key, mark, wait=MARK_WAIT_S)
        except LoraTuiError as exc:  # another process holding the marks, or a read-only project
            self.notify(str(exc), severity="error", markup=False)
            return
        self.image_list.refresh()
        self.update_status()
        self.notify(f"{self.row.record.name}: {mark}" if on_ else f"{self.row.record.name}: not {mark}",
                    markup=False, timeout=2)

    def action_review_next(self) -> None:
        if self.row is None or not self.save_current():
            return
        if not self.marks.has(self.row.key, "reviewed"):
            try:
                self.marks.set([self.row.key], "reviewed", True, wait=MARK_WAIT_S)
            except LoraTuiError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
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
        self.update_status()
        self.notify("every image here is reviewed", timeout=3)

    def action_undo(self) -> None:
        self.save_current()
        self.writer.undo()

    def action_redo(self) -> None:
        self.save_current()
        self.writer.redo()

    def action_toggle_chips(self) -> None:
        self.caption_pane.toggle(self.row is not None)

    # -- leaving ---------------------------------------------------------------------------------
    def action_overview(self) -> None:
        """Back to the overview, handing it the scans (current, refreshed file by file) when complete."""
        self.dismiss(self.index.scans if self.index is not None and self.captions_ready else None)

    def on_unmount(self) -> None:
        self.loader.opened()
        self.saver.save_on_exit()  # no edit in progress is lost
        self.outside.stop()

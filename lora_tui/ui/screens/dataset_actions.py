"""Filtering and bulk caption edits for the dataset screen (kept apart to keep screens small).

Every bulk edit is computed by core as a preview, shown in :class:`ConfirmPreview`, and applied
through the journal only when confirmed; scope is always the images the filter shows.
"""

from __future__ import annotations

from dataclasses import replace

from lora_tui.core import bulk
from lora_tui.core.bulk import Preview
from lora_tui.core.dataset_index import ORDERS, Filter
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Outcome
from lora_tui.ui.screens.modals import AskReplace, AskText, ConfirmPreview, ReplaceRequest
from lora_tui.ui.widgets.dataset.tag_panel import TagPanel

STATES = (None, "unreviewed", "flagged", "excluded", "uncaptioned", "reviewed")


class DatasetActions:
    """Mixed into DatasetScreen; expects ``index``, ``journal``, ``image_list``, ``_reload`` and the
    :class:`~lora_tui.ui.screens.dataset_journal.JournalWrites` helpers."""

    # -- filters ---------------------------------------------------------------------------
    def _set_filter(self, flt: Filter) -> None:
        if self.index is None:
            return
        self._save_current()
        rows = self.index.apply(flt)
        self.image_list.set_rows(rows)
        self._refresh_tags()
        self._status()

    def _refresh_tags(self) -> None:
        panel = self.query_one(TagPanel)
        if self.index is not None and panel.display:
            panel.show(self.index.tag_counts(), self.index.filter.tag)

    def action_toggle_tags(self) -> None:
        panel = self.query_one(TagPanel)
        panel.display = not panel.display
        if panel.display:
            self._refresh_tags()
            panel.focus()
        else:
            self.image_list.focus()

    def on_tag_panel_picked(self, message: TagPanel.Picked) -> None:  # a name: @on does not work in mixins
        if self.index is not None:
            same = self.index.filter.tag == message.tag
            self._set_filter(replace(self.index.filter, tag=None if same else message.tag))

    def action_filter_text(self) -> None:
        if self.index is not None:
            self.app.push_screen(AskText("Show images whose caption or name contains", self.index.filter.text),
                                 lambda text: text is not None and self._set_filter(
                                     replace(self.index.filter, text=text)))

    def action_cycle_subset(self) -> None:
        if self.index is None:
            return
        keys = [None, *dict.fromkeys(f"{r.subset.dataset_index}.{r.subset.index}" for r in self.index.rows)]
        current = keys.index(self.index.filter.subset) if self.index.filter.subset in keys else 0
        self._set_filter(replace(self.index.filter, subset=keys[(current + 1) % len(keys)]))

    def action_cycle_state(self) -> None:
        if self.index is not None:
            current = STATES.index(self.index.filter.state) if self.index.filter.state in STATES else 0
            self._set_filter(replace(self.index.filter, state=STATES[(current + 1) % len(STATES)]))

    def action_cycle_order(self) -> None:
        if self.index is not None:
            current = ORDERS.index(self.index.filter.order)
            self._set_filter(replace(self.index.filter, order=ORDERS[(current + 1) % len(ORDERS)]))

    def action_clear_filter(self) -> None:
        self._set_filter(Filter())

    def filter_label(self) -> str:
        if self.index is None:
            return ""
        f = self.index.filter
        parts = []
        if f.subset is not None:
            names = {f"{r.subset.dataset_index}.{r.subset.index}": r.subset.name for r in self.index.rows}
            parts.append(f"subset {names.get(f.subset, f.subset)}")
        if f.tag:
            parts.append(f"tag '{f.tag}'")
        if f.text:
            parts.append(f"text '{f.text}'")
        if f.state:
            parts.append(f.state)
        if f.order != "project":
            parts.append(f"sorted by {f.order}")
        return " · filter: " + ", ".join(parts) if parts else ""

    # -- bulk edits over the filter -----------------------------------------------------------
    def _targets(self) -> list[bulk.Target]:
        return [(row.subset, row.record) for row in self.index.view] if self.index else []

    def _tag_choices(self) -> list[str]:
        return list(self.index.tag_counts(self.index.rows)) if self.index else []

    def _offer(self, make) -> None:
        """Build a preview (core), confirm it, apply it through the journal."""
        self._save_current()
        try:
            preview: Preview = make()
        except LoraTuiError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        if not preview.changes:
            self.notify(f"{preview.label}: no caption changes", timeout=3, markup=False)
            return

        def applied(outcome: Outcome | None) -> None:
            if outcome is not None:
                self.tell(f"{preview.label}: {outcome.written} captions changed (u undoes)", outcome)
            self._reload(self.image_list.cursor)

        def done(ok: bool | None) -> None:
            if ok:  # captions changed since the preview are left alone and named (core compares each)
                self.run_write(f"applying {preview.label}…", lambda wait: preview.apply(self.journal, wait=wait),
                               applied)

        self.app.push_screen(ConfirmPreview(preview), done)

    def _current_or_ask(self, title: str, then) -> None:
        panel = self.query_one(TagPanel)
        tag = panel.current_tag if panel.display and panel.has_focus else None
        if tag:
            then(tag)
        else:
            self.app.push_screen(AskText(title, suggestions=self._tag_choices()),
                                 lambda value: value and then(value))

    def action_rename_tag(self) -> None:
        def ask_new(old: str) -> None:
            self.app.push_screen(AskText(f"Rename '{old}' in the captions shown to", old, self._tag_choices()),
                                 lambda new: new and new != old and self._offer(
                                     lambda: bulk.rename_tag(self._targets(), old, new)))

        self._current_or_ask("Tag to rename", ask_new)

    def action_remove_tag(self) -> None:
        self._current_or_ask("Tag to remove", lambda tag: self._offer(lambda: bulk.remove_tag(self._targets(), tag)))

    def action_add_tag(self) -> None:
        self.app.push_screen(AskText("Tag to add to the captions shown", suggestions=self._tag_choices()),
                             lambda tag: tag and self._offer(lambda: bulk.add_tag(self._targets(), tag)))

    def action_find_replace(self) -> None:
        def got(req: ReplaceRequest | None) -> None:
            if req is not None and req.find:
                self._offer(lambda: bulk.find_replace(self._targets(), req.find, req.replace, regex=req.regex))

        self.app.push_screen(AskReplace(), got)

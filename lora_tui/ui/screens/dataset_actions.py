"""Filtering and bulk caption edits for the dataset screen, each a small controller.

Every bulk edit is computed by core as a preview, shown in :class:`ConfirmPreview`, and applied
through the journal only when confirmed; scope is always the images the filter shows. The write
itself goes through the screen's :class:`~lora_tui.ui.screens.dataset_journal.JournalWriter`, whose
``Written`` message makes the screen re-read exactly the files that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lora_tui.core import bulk
from lora_tui.core.bulk import Preview
from lora_tui.core.dataset_index import ORDERS, DatasetIndex, Filter
from lora_tui.core.errors import LoraTuiError
from lora_tui.ui.screens.modals import AskReplace, AskText, ConfirmPreview, ReplaceRequest
from lora_tui.ui.widgets.dataset.tag_panel import TagPanel

STATES = (None, "unreviewed", "flagged", "excluded", "uncaptioned", "reviewed")


class Filters:
    """What the image list shows. ``host``: the screen (``index``, ``image_list``, ``tag_panel``,
    ``save_current``, ``update_status``)."""

    def __init__(self, host: Any) -> None:
        self.host = host

    @property
    def index(self) -> DatasetIndex | None:
        return self.host.index

    def set(self, flt: Filter) -> None:
        if self.index is None:
            return
        self.host.save_current()
        self.host.image_list.set_rows(self.index.apply(flt))
        self.refresh_tags()
        self.host.update_status()

    def refresh_tags(self) -> None:
        panel: TagPanel = self.host.tag_panel
        if self.index is not None and panel.display:
            panel.show(self.index.tag_counts(), self.index.filter.tag)

    def toggle_tags(self) -> None:
        panel: TagPanel = self.host.tag_panel
        panel.display = not panel.display
        if panel.display:
            self.refresh_tags()
            panel.focus()
        else:
            self.host.image_list.focus()

    def tag(self, tag: str) -> None:
        if self.index is not None:
            same = self.index.filter.tag == tag
            self.set(replace(self.index.filter, tag=None if same else tag))

    def filter_text(self) -> None:
        if self.index is not None:
            self.host.app.push_screen(AskText("Show images whose caption or name contains", self.index.filter.text),
                                      lambda text: text is not None and self.set(
                                          replace(self.index.filter, text=text)))

    def cycle_subset(self) -> None:
        if self.index is None:
            return
        keys = [None, *dict.fromkeys(f"{r.subset.dataset_index}.{r.subset.index}" for r in self.index.rows)]
        current = keys.index(self.index.filter.subset) if self.index.filter.subset in keys else 0
        self.set(replace(self.index.filter, subset=keys[(current + 1) % len(keys)]))

    def cycle_state(self) -> None:
        if self.index is not None:
            current = STATES.index(self.index.filter.state) if self.index.filter.state in STATES else 0
            self.set(replace(self.index.filter, state=STATES[(current + 1) % len(STATES)]))

    def cycle_order(self) -> None:
        if self.index is not None:
            current = ORDERS.index(self.index.filter.order)
            self.set(replace(self.index.filter, order=ORDERS[(current + 1) % len(ORDERS)]))

    def clear_filter(self) -> None:
        self.set(Filter())

    def label(self) -> str:
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


class BulkEdits:
    """Rename, remove, add a tag, find/replace over the images shown, after a preview.

    ``host``: the screen (``index``, ``tag_panel``, ``writer``, ``save_current``, ``notify``, ``app``).
    """

    def __init__(self, host: Any) -> None:
        self.host = host

    def _targets(self) -> list[bulk.Target]:
        index = self.host.index
        return [(row.subset, row.record) for row in index.view] if index else []

    def _tag_choices(self) -> list[str]:
        index = self.host.index
        return list(index.tag_counts(index.rows)) if index else []

    def _ask(self, screen: Any, then: Callable[[Any], Any]) -> None:
        self.host.app.push_screen(screen, then)

    def offer(self, make: Callable[[], Preview]) -> None:
        """Build a preview (core), confirm it, apply it through the journal."""
        host = self.host
        host.save_current()
        try:
            preview = make()
        except LoraTuiError as exc:
            host.notify(str(exc), severity="error", markup=False)
            return
        if not preview.changes:
            host.notify(f"{preview.label}: no caption changes", timeout=3, markup=False)
            return

        def done(ok: bool | None) -> None:
            if ok:  # captions changed since the preview are left alone and named (core compares each)
                host.writer.run(f"applying {preview.label}…",
                                lambda wait: preview.apply(host.journal, wait=wait),
                                lambda outcome: outcome is not None and host.writer.tell(
                                    f"{preview.label}: {outcome.written} captions changed (u undoes)",
                                    outcome, host.project.root))

        self._ask(ConfirmPreview(preview), done)

    def _current_or_ask(self, title: str, then: Callable[[str], Any]) -> None:
        panel: TagPanel = self.host.tag_panel
        tag = panel.current_tag if panel.display and panel.has_focus else None
        if tag:
            then(tag)
        else:
            self._ask(AskText(title, suggestions=self._tag_choices()), lambda value: value and then(value))

    def rename_tag(self) -> None:
        def ask_new(old: str) -> None:
            self._ask(AskText(f"Rename '{old}' in the captions shown to", old, self._tag_choices()),
                      lambda new: new and new != old and self.offer(
                          lambda: bulk.rename_tag(self._targets(), old, new)))

        self._current_or_ask("Tag to rename", ask_new)

    def remove_tag(self) -> None:
        self._current_or_ask("Tag to remove", lambda tag: self.offer(lambda: bulk.remove_tag(self._targets(), tag)))

    def add_tag(self) -> None:
        self._ask(AskText("Tag to add to the captions shown", suggestions=self._tag_choices()),
                  lambda tag: tag and self.offer(lambda: bulk.add_tag(self._targets(), tag)))

    def find_replace(self) -> None:
        def got(req: ReplaceRequest | None) -> None:
            if req is not None and req.find:
                self.offer(lambda: bulk.find_replace(self._targets(), req.find, req.replace, regex=req.regex))

        self._ask(AskReplace(), got)

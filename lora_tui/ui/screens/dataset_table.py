"""The dataset screen's actions (keys, footer, F1 help and palette entries in one table)."""

from __future__ import annotations

from typing import Any

from lora_tui.ui.actions import Action, Actions


def _has_image(screen: Any) -> bool:
    return screen.row is not None


def _in_conflict(screen: Any) -> bool:
    return screen.outside.in_conflict(screen.row)


def _filtered(screen: Any) -> bool:
    from lora_tui.core.dataset_index import Filter

    return screen.index is not None and screen.index.filter != Filter()


DATASET_ACTIONS = Actions("dataset", "Dataset", group="dataset", intro=(
    "List on the left, preview and caption editor on the right. Captions save by themselves (leaving an "
    "image or the editor, a pause in typing, quitting) and every edit is undoable, also after a restart."), actions=(
    Action("dataset.edit", "enter,e", "Edit caption", "edit", title="Edit the caption", when=_has_image),
    Action("dataset.next", "ctrl+down", "Next image", "step(1)", priority=True, show=False,
           title="Next image (from the editor too)"),
    Action("dataset.prev", "ctrl+up", "Prev image", "step(-1)", priority=True, show=False,
           title="Previous image (from the editor too)"),
    Action("dataset.reviewed", "r", "Reviewed", "mark('reviewed')", title="Mark reviewed", when=_has_image),
    Action("dataset.review_next", "ctrl+r", "Reviewed + next", "review_next", priority=True,
           title="Mark reviewed and go to the next unreviewed image", when=_has_image),
    Action("dataset.flagged", "f", "Flag", "mark('flagged')", show=False, when=_has_image),
    Action("dataset.excluded", "x", "Exclude", "mark('excluded')", show=False,
           title="Exclude from training", when=_has_image),
    Action("dataset.next_unreviewed", "n", "Next unreviewed", "next_unreviewed", title="Next unreviewed image"),
    Action("dataset.undo", "u", "Undo", "undo", group="captions", title="Undo the last caption edit"),
    Action("dataset.redo", "ctrl+y", "Redo", "redo", group="captions", show=False),
    Action("dataset.overview", "o", "Overview", "overview", title="Back to the project overview"),
    Action("dataset.tags", "t", "Tags", "toggle_tags", on="filters",
           title="Show or hide the tag panel (enter filters by a tag)"),
    Action("dataset.chips", "c", "Chips", "toggle_chips", show=False,
           title="Edit the caption as tag chips", when=_has_image),
    Action("dataset.chips_anywhere", "ctrl+t", "Text/chips", "toggle_chips", priority=True, show=False,
           title="Switch between text and chips", palette=False),
    Action("dataset.filter_text", "slash", "Filter", "filter_text", on="filters", title="Filter by text"),
    Action("dataset.cycle_subset", "s", "Subset", "cycle_subset", on="filters", show=False, title="Next subset filter"),
    Action("dataset.cycle_state", "v", "State", "cycle_state", on="filters", show=False,
           title="Next review-state filter"),
    Action("dataset.cycle_order", "S", "Sort", "cycle_order", on="filters", show=False, title="Next sort order"),
    Action("dataset.clear_filter", "", "Clear filter", "clear_filter", on="filters",
           title="Clear the filter", when=_filtered),
    Action("dataset.escape", "escape", "Back", "escape", show=False, palette=False,
           title="Back to the list / clear the filter"),
    Action("dataset.rename_tag", "R", "Rename tag", "rename_tag", on="bulk", show=False, group="captions",
           title="Rename a tag in the captions shown"),
    Action("dataset.remove_tag", "D", "Remove tag", "remove_tag", on="bulk", show=False, group="captions",
           title="Remove a tag from the captions shown"),
    Action("dataset.add_tag", "A", "Add tag", "add_tag", on="bulk", show=False, group="captions",
           title="Add a tag to the captions shown"),
    Action("dataset.find_replace", "F", "Find/replace", "find_replace", on="bulk", show=False, group="captions",
           title="Find and replace"),
    Action("dataset.keep_mine", "ctrl+o", "Keep my caption", "keep_mine", on="outside", show=False, priority=True,
           group="captions", title="Keep my caption (over the one changed on disk)", when=_in_conflict),
    Action("dataset.load_theirs", "ctrl+l", "Load caption from disk", "load_theirs", on="outside", show=False,
           priority=True, group="captions", title="Load the caption changed on disk (drop my edit)", when=_in_conflict),
), notes=(
    "typing a tag suggests the dataset's most used tag with that prefix: **→** or **tab** takes it",
    "bulk edits (rename, remove, add, find/replace) apply to the images shown, after a preview",
))

"""The image list: a line-API scroll view over the core index, so 10,000 rows cost nothing to show."""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from lora_tui.core.dataset_index import Row
from lora_tui.core.review import ReviewMarks
from lora_tui.ui.actions import Action, Actions

STATE_LABEL = {"ok": "caption", "class": "class tk", "missing": "none", "empty": "empty", "error": "error",
               "pending": "…"}


class ImageList(ScrollView, can_focus=True):
    """Rows come from the index (a model); the widget only draws them and reports the cursor."""

    ACTIONS = Actions("list", "Image list", actions=(
        Action("list.down", "down,j", "Next", "move(1)", show=False, palette=False),
        Action("list.up", "up,k", "Previous", "move(-1)", show=False, palette=False),
        Action("list.pagedown", "pagedown", "Page down", "page(1)", show=False, palette=False),
        Action("list.pageup", "pageup", "Page up", "page(-1)", show=False, palette=False),
        Action("list.home", "home,g", "First image", "jump(0)", show=False, palette=False),
        Action("list.end", "end,G", "Last image", "jump(-1)", show=False, palette=False),
    ))
    BINDINGS = ACTIONS.bindings()
    # Every colour comes from the theme through these component classes (a theme file, or the user's
    # CSS, can restyle them): the mark column, each caption state, the token count, the cursor row.
    COMPONENT_CLASSES = {
        "image-list--reviewed", "image-list--flagged", "image-list--caption", "image-list--tokens",
        "image-list--tokens-over", "image-list--cursor", "image-list--cursor-blurred",
        *(f"image-list--state-{state}" for state in STATE_LABEL),
    }
    DEFAULT_CSS = """
    ImageList { background: $surface; }
    ImageList:focus { background-tint: $primary 5%; }
    ImageList > .image-list--reviewed { color: $success; }
    ImageList > .image-list--flagged { color: $secondary; }
    ImageList > .image-list--caption { text-style: dim; }
    ImageList > .image-list--tokens { text-style: dim; }
    ImageList > .image-list--tokens-over { color: $error; }
    ImageList > .image-list--cursor { text-style: reverse; }
    ImageList > .image-list--cursor-blurred { text-style: bold underline; }
    ImageList > .image-list--state-ok { color: $success; }
    ImageList > .image-list--state-class { color: $primary; }
    ImageList > .image-list--state-missing { color: $warning; }
    ImageList > .image-list--state-empty { color: $error; }
    ImageList > .image-list--state-error { color: $error; text-style: bold; }
    ImageList > .image-list--state-pending { color: $text-muted; }
    """
    cursor: reactive[int] = reactive(0, always_update=True)

    @dataclass
    class Highlighted(Message):
        index: int
        row: Row | None

    def __init__(self, marks: ReviewMarks, **kwargs) -> None:
        super().__init__(**kwargs)
        self.marks = marks
        self.rows: list[Row] = []

    def set_rows(self, rows: list[Row], cursor: int = 0) -> None:
        self.rows = rows
        self.virtual_size = Size(self.size.width, len(rows))
        self.cursor = max(0, min(cursor, len(rows) - 1))
        self.refresh()

    @property
    def current(self) -> Row | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def watch_cursor(self, value: int) -> None:
        if self.rows:
            self.scroll_to_region_of(value)
        self.refresh()
        self.post_message(self.Highlighted(value, self.current))

    def scroll_to_region_of(self, index: int) -> None:
        top, height = self.scroll_offset.y, max(1, self.scrollable_content_region.height)
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, index: int) -> None:
        if self.rows:
            self.cursor = index % len(self.rows)

    def refresh_row(self, index: int) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        if index >= len(self.rows):
            return Strip.blank(width)
        row = self.rows[index]
        marks = self.marks.get(row.key)
        mark = "✗" if "excluded" in marks else "!" if "flagged" in marks else "✓" if "reviewed" in marks else " "
        state = row.caption_state
        style = self.get_component_rich_style
        base = style("image-list--cursor" if self.has_focus else "image-list--cursor-blurred", partial=True) \
            if index == self.cursor else Style()
        name = row.record.name
        preview = row.text.replace("\n", " ⏎ ")
        over = row.tokens > 75
        segments = [
            Segment(f"{mark} ", base + style("image-list--flagged" if mark in "!✗" else "image-list--reviewed",
                                             partial=True)),
            Segment(f"{name[:28]:<28} ", base),
            Segment(f"{STATE_LABEL[state]:<8} ", base + style(f"image-list--state-{state}", partial=True)),
            Segment("   … " if state == "pending" else f"{row.tokens:>3}t ",
                    base + style("image-list--tokens-over" if over else "image-list--tokens", partial=True)),
            Segment(preview, base + style("image-list--caption", partial=True)),
        ]
        return Strip(segments).crop_extend(0, width, base)

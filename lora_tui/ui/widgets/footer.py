"""The key footer, rebuilt only when what it shows changes.

Textual's Footer rebuilds all of its keys (a widget each, styled and laid out) every time the
screen's bindings may have changed: on mount, on each focus change, when a screen is resumed. Opening
the app fired that four times on the overview (about 36 key widgets styled for 9 shown), a large
share of the time to the first interactive screen. This footer coalesces the requests made before
the next refresh into one and skips the rebuild when the keys it would show are the ones it shows,
it shows its keys in the screen's first frame (not one frame later), and it builds each key in its
final style (each was otherwise styled three times when mounted).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey


class Footer(TextualFooter):
    """A drop-in Footer (same look, same CSS type) that rebuilds only for a different set of keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rebuild_pending = False
        self._shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild_if_changed)

    def _keys(self) -> tuple:
        """What compose would show: every shown binding with its state, and the palette key."""
        app = self.app
        shown = tuple(
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip,
             app.get_key_display(binding))
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values() if binding.show)
        palette = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        palette_key = None if palette is None else (palette[1].key, palette[1].description, palette[2],
                                                    palette[3], palette[1].tooltip)
        return shown, palette_key, self.show_command_palette, self.compact, self.combine_groups

    async def _rebuild_if_changed(self) -> None:
        self._rebuild_pending = False
        if not self.is_attached:
            return
        keys = self._keys()
        if keys == self._shown and self.children:
            return
        self._shown = keys
        await self.recompose()

    def compose(self) -> ComposeResult:
        if self.is_attached:
            # The keys from the start, in the screen's first frame: Textual's footer is empty until
            # the screen's first bindings signal, after that frame, then rebuilt and painted again.
            self.set_reactive(TextualFooter._bindings_ready, True)
            self._shown = self._keys()
        for widget in super().compose():  # keys in a binding group pass here too (yielded in its `with`)
            if isinstance(widget, FooterKey):
                # A key is born compact (its own default) and learns its style when mounted: the
                # footer's, bound to it (the palette key is not bound: it stays compact). Restyled
                # twice each that way; born in its final style, it is styled once.
                compact = True if widget.has_class("-command-palette") else self.compact
                widget.set_reactive(FooterKey.compact, compact)
                widget.set_class(compact, "-compact", update=False)
            yield widget

"""Terminal graphics (Kitty graphics protocol, Sixel) through textual-image.

textual-image learns the terminal's cell size and graphics support by querying the terminal, which
only works before Textual starts reading stdin; :func:`prepare` does that once, in ``run_app``.
Everything else in the app keeps working without it: half-block cells are our own renderer.
"""

from __future__ import annotations

import os
import sys
from typing import Any

GRAPHIC_PROTOCOLS = ("kitty", "sixel")


def _is_tty() -> bool:
    return bool(sys.__stdout__ and sys.__stdout__.isatty())


def detect() -> str:
    """The best protocol this terminal answers for: ``kitty``, ``sixel`` or ``halfblock``.

    Not a tty (tests, pipes) means half-block without asking. Inside tmux the Kitty protocol cannot
    reach the outer terminal (textual-image does not wrap it for passthrough), so only Sixel is
    considered there; tmux 3.4+ built with Sixel support answers for it itself.
    """
    if not _is_tty():
        return "halfblock"
    try:
        from textual_image import renderable
    except Exception:  # the dependency is missing or its terminal query failed
        return "halfblock"
    if renderable.Image is renderable.SixelImage:
        return "sixel"
    if renderable.Image is renderable.TGPImage and not os.environ.get("TMUX"):
        return "kitty"
    return "halfblock"


def prepare(protocol: str) -> str:
    """Load textual-image for ``protocol`` before the app starts; an unusable one falls back.

    Returns the protocol that will really be used, so the app can say so instead of showing blank
    panes.
    """
    if protocol not in GRAPHIC_PROTOCOLS:
        return protocol
    if not _is_tty():
        return protocol  # headless runs (tests) build the widget without a terminal query
    try:
        import textual_image.widget  # noqa: F401  (queries the cell size while we still own stdin)
    except Exception:
        return "halfblock"
    return protocol


def cell_pixels() -> tuple[int, int]:
    """Pixels per terminal cell (width, height), so thumbnails are decoded at the size shown."""
    try:
        from textual_image._terminal import get_cell_size

        size = get_cell_size()
        if size.width > 0 and size.height > 0:
            return size.width, size.height
    except Exception:
        pass
    return 10, 20


def graphic_widget(protocol: str, **kwargs: Any) -> Any:
    """A textual-image widget drawing with ``protocol``; the caller sets ``.image``."""
    from textual_image import widget

    cls = widget.TGPImage if protocol == "kitty" else widget.SixelImage
    return cls(**kwargs)

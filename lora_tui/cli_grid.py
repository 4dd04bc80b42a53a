"""``lora-tui grid RUN``: every checkpoint × weight × prompt of a run, one labelled grid per prompt."""

from __future__ import annotations

from typing import Any


def add_grid_parser(sub: Any) -> None:
    """Registered by cli_lora; filled in by the grid slice."""

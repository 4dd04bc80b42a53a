"""User settings for the app: keymap overrides and the image renderer, from files and the environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfblock", "none")


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lora-tui"


@dataclass
class Settings:
    theme: str | None = None
    image_protocol: str = "auto"
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """``keymap.toml``: ``[keys]`` binding id = "key[,key…]"; problems are reported, not fatal."""
    path = path or config_dir() / "keymap.toml"
    if not path.exists():
        return {}, []
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"{path}: {exc}"]
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        return {}, [f"{path}: [keys] must map binding ids to key strings"]
    return dict(keys), []


def resolve_image_protocol(value: str | None, detect: Callable[[], str] | None = None) -> str:
    """The renderer for previews: flag, then LORA_TUI_IMAGE_PROTOCOL, then auto.

    ``auto`` asks ``detect`` (the terminal query, which must run before Textual owns the terminal)
    and settles on half-block cells when nothing better answers: they work over any SSH link and
    inside tmux without passthrough.
    """
    chosen = value or os.environ.get("LORA_TUI_IMAGE_PROTOCOL") or "auto"
    if chosen not in IMAGE_PROTOCOLS:
        raise ValueError(f"unknown image protocol {chosen!r}; use one of {', '.join(IMAGE_PROTOCOLS)}")
    if chosen != "auto":
        return chosen
    return detect() if detect is not None else "halfblock"

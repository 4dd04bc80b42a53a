"""User settings for the app: keymap overrides, the theme last picked and the image renderer, from
files (``$XDG_CONFIG_HOME/lora-tui/``) and the environment."""

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
    saved_theme: str | None = None  # picked in the palette last time (settings.toml)
    remember_theme: bool = False  # save a theme picked now for the next start (the real app does)


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


def load_saved_theme(path: Path | None = None) -> tuple[str | None, list[str]]:
    """The theme picked last time (``settings.toml``: ``theme = "name"``); problems are reported, not fatal."""
    path = path or config_dir() / "settings.toml"
    if not path.exists():
        return None, []
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [f"{path}: {exc}"]
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        return None, [f"{path}: theme must be a theme name in quotes"]
    return theme, []


def save_theme(name: str, path: Path | None = None) -> str | None:
    """Remember ``name`` for the next start (other keys of the file are kept); a problem as one line."""
    import tomlkit

    from lora_tui.core.fsio import atomic_write_text

    path = path or config_dir() / "settings.toml"
    try:
        doc = tomlkit.parse(path.read_text("utf-8")) if path.exists() else tomlkit.document()
        doc["theme"] = name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, tomlkit.dumps(doc))
    except Exception as exc:  # OSError, a broken file (tomlkit raises its own types): say so, keep going
        return f"theme not remembered: {path}: {exc}"
    return None


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

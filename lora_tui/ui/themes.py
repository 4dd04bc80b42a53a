"""Themes are data: TOML files shipped in the wheel (``lora_tui/themes``) plus the user's own
(``$XDG_CONFIG_HOME/lora-tui/themes``). A broken file is reported, never fatal."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COLOR_KEYS = ("primary", "secondary", "accent", "warning", "error", "success", "background", "surface",
              "panel", "foreground", "boost")
DEFAULT_THEME = "lora-dark"


@dataclass
class ThemeLoad:
    themes: list[Theme] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def builtin_theme_dir() -> Path:
    """Themes inside the installed package, or the repository's themes/ in a source checkout."""
    packaged = Path(str(resources.files("lora_tui"))) / "themes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "themes"


def user_theme_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lora-tui" / "themes"


def parse_theme(path: Path) -> Theme:
    """One theme file → Theme; ValueError with the file name when it is not valid."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data.get("name"), str) or not isinstance(data.get("primary"), str):
        raise ValueError(f"{path}: a theme needs name and primary")
    for key in COLOR_KEYS:
        if key in data:
            try:
                Color.parse(data[key])
            except ColorParseError:
                raise ValueError(f"{path}: {key} = {data[key]!r} is not a colour") from None
    variables = {str(k): str(v) for k, v in (data.get("variables") or {}).items()}
    kwargs = {k: data[k] for k in COLOR_KEYS if k in data}
    return Theme(name=data["name"], dark=bool(data.get("dark", True)), variables=variables, **kwargs)


def load_themes(folders: list[Path] | None = None) -> ThemeLoad:
    result = ThemeLoad()
    for folder in folders if folders is not None else [builtin_theme_dir(), user_theme_dir()]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                result.themes.append(parse_theme(path))
            except ValueError as exc:
                result.problems.append(str(exc))
    return result

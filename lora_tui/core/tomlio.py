"""Reading TOML with errors that name the file and the line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

from lora_tui.core.errors import ConfigError


def read_text_file(path: Path, what: str) -> str:
    """Read a UTF-8 text file (BOM tolerated) or raise a one-line :class:`ConfigError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path=path, hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a folder, not a file", path=path) from None
    except PermissionError:
        raise ConfigError(f"{what} is not readable", path=path, hint=f"chmod u+r '{path}'") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path=path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not valid UTF-8", path=path, line=line,
                          hint="re-save it as UTF-8") from None


def parse_plain(path: Path, what: str = "TOML file") -> dict[str, Any]:
    """Parse TOML into plain Python values (for foreign files we never write back)."""
    text = read_text_file(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(match.group(1)) if match else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError(f"invalid TOML: {msg}", path=path, line=line,
                          hint="fix the syntax at that line") from None


def parse_document(path: Path, what: str = "TOML file") -> tomlkit.TOMLDocument:
    """Parse TOML keeping comments and layout, so a save writes back what the user wrote."""
    text = read_text_file(path, what)
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        msg = re.sub(r"\s*at line \d+ col \d+", "", str(exc))
        raise ConfigError(f"invalid TOML: {msg}", path=path, line=exc.line,
                          hint="fix the syntax at that line") from None


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")


def locate_key(text: str, dotted: str) -> int | None:
    """Best-effort line number of a key given as ``datasets[0].subsets[1].image_dir``.

    Walks the table headers of a conventionally laid-out file; returns None when the key cannot be
    pinned down (inline tables, dotted keys), in which case errors just name the file.
    """
    parts = re.findall(r"([A-Za-z0-9_\-]+)(?:\[(\d+)\])?", dotted)
    if not parts:
        return None
    *tables, (leaf, _) = parts
    want = ".".join(name for name, _ in tables)
    counters: dict[str, int] = {}
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(2).replace(" ", "").replace('"', "")
            if header.group(1) == "[[":
                counters[current] = counters.get(current, -1) + 1
                for key in counters:
                    if key.startswith(current + "."):
                        counters[key] = -1
            if current == dotted:
                return number
            continue
        if current == want and _indices_match(tables, counters) and re.match(
                rf"^\s*\"?{re.escape(leaf)}\"?\s*=", line):
            return number
    return None


def _indices_match(tables: list[tuple[str, str]], counters: dict[str, int]) -> bool:
    path = ""
    for name, index in tables:
        path = f"{path}.{name}" if path else name
        if index and counters.get(path, -1) != int(index):
            return False
    return True

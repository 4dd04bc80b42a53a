"""Caption sidecars: lookup, reading and tag handling with sd-scripts' semantics.

sd-scripts reads ``<image stem><caption_extension>`` as UTF-8, uses only the first line unless
``enable_wildcard`` is on (then every non-empty line is a variant), and splits tags on
``caption_separator``. We read exactly that, tolerate a UTF-8 BOM (and flag it, since sd-scripts
would keep it inside the first tag), and never lose the lines sd-scripts ignores when we edit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core.errors import CaptionError

BOM = "\ufeff"
# sd-scripts opens captions in text mode (universal newlines), so \r\n, \r and \n end a line and
# nothing else does (unlike str.splitlines, which also splits on U+2028, form feeds, ...).
_NEWLINE = re.compile(r"\r\n|\r|\n")
_NEWLINE_KEEP = re.compile(r"(\r\n|\r|\n)")


def caption_lines(text: str) -> list[str]:
    """Lines as sd-scripts' ``readlines()`` sees them (without a trailing empty line)."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def caption_candidates(image: Path, extension: str) -> list[Path]:
    """Sidecar paths sd-scripts tries, in order (the second strips face-crop suffixes)."""
    stem = image.with_suffix("")
    out = [Path(str(stem) + extension)]
    tokens = stem.name.split("_")
    if len(tokens) >= 5:
        out.append(stem.with_name("_".join(tokens[:-4]) + extension))
    return out


def find_caption(image: Path, extension: str, names: frozenset[str] | None = None) -> Path | None:
    """The sidecar sd-scripts would read for ``image``, or None; ``names`` avoids a stat per file."""
    for candidate in caption_candidates(image, extension):
        if names is not None:
            if candidate.name in names:
                return candidate
        elif candidate.is_file():
            return candidate
    return None


def sidecar_path(image: Path, extension: str) -> Path:
    """Where a new caption for ``image`` is written."""
    return Path(str(image.with_suffix("")) + extension)


@dataclass(frozen=True)
class CaptionText:
    """A decoded caption file: the raw text plus what sd-scripts will actually train on."""

    raw: str
    had_bom: bool = False

    def lines(self) -> list[str]:
        return caption_lines(self.raw)

    def effective(self, wildcard: bool = False) -> str:
        """First line stripped, or with wildcards every non-empty stripped line joined by newlines."""
        lines = [ln.strip() for ln in caption_lines(self.raw)]
        if wildcard:
            return "\n".join(ln for ln in lines if ln)
        return lines[0] if lines else ""

    @property
    def is_empty_file(self) -> bool:
        return self.raw == ""

    @property
    def ignored_lines(self) -> int:
        """Lines after the first, which sd-scripts ignores without enable_wildcard."""
        return max(0, len([ln for ln in caption_lines(self.raw) if ln.strip()]) - 1)


def decode_caption(data: bytes, path: Path | str) -> CaptionText:
    """Decode caption bytes; non-UTF-8 is an error because sd-scripts would crash on it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CaptionError("caption is not valid UTF-8", path=path, line=line,
                           hint="re-save the file as UTF-8") from None
    if text.startswith(BOM):
        return CaptionText(text[1:], had_bom=True)
    return CaptionText(text)


def read_caption(path: Path) -> CaptionText:
    """Read one caption file with a one-line :class:`CaptionError` for every failure."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise CaptionError("caption path is a folder, not a file", path=path,
                           hint="rename or remove that folder") from None
    except PermissionError:
        raise CaptionError("caption file is not readable", path=path, hint=f"chmod u+r '{path}'") from None
    except FileNotFoundError:
        raise CaptionError("caption file does not exist", path=path) from None
    except OSError as exc:
        raise CaptionError(f"cannot read caption: {exc.strerror or exc}", path=path) from None
    return decode_caption(data, path)


def caption_text(path: Path) -> str | None:
    """A caption file's text as editors show it and compare it: decoded by :func:`decode_caption` (a BOM
    dropped, CR/CRLF line endings kept as they are), None when there is no file.

    Every place that compares a caption on disk with an editor's text reads it through here, so a
    caption saved with a BOM or Windows line endings is not mistaken for a changed one.
    """
    try:
        return read_caption(path).raw
    except CaptionError:
        if not path.exists():
            return None
        raise


def split_tags(text: str, separator: str = ",") -> list[str]:
    """Tags of one caption line, stripped, empties dropped (sd-scripts' split-and-strip)."""
    sep = separator or ","
    return [t.strip() for t in text.split(sep) if t.strip()]


def join_tags(tags: list[str], separator: str = ",") -> str:
    """Join tags back; a comma separator gets the conventional trailing space."""
    sep = separator or ","
    glue = sep + " " if sep.strip() and not sep.endswith(" ") else sep
    return glue.join(tags)


def map_caption_lines(raw: str, wildcard: bool, change: Callable[[str], str]) -> str:
    """Apply ``change(line) -> line`` to the lines sd-scripts trains on, keep the rest verbatim.

    Without wildcards only the first line is live; with them every non-empty line is a variant.
    Line endings (LF, CRLF, CR) and the final newline (or its absence) are preserved.
    """
    parts = _NEWLINE_KEEP.split(raw)  # [line, sep, line, sep, ..., line]
    if not wildcard:
        parts[0] = change(parts[0])
        return "".join(parts)
    for i in range(0, len(parts), 2):
        if parts[i].strip() or len(parts) == 1:
            parts[i] = change(parts[i])
    return "".join(parts)

"""What a terminal would show of sd-scripts' raw console bytes: bar draws, Rich records, plain lines.

Kept apart from ``sdscripts_log`` (what those mean: steps, saves, samples, tracebacks) because this
part is about the terminal only. Its input, stdout and stderr in one file:

- the tqdm bar `steps:  50%|█████     | 3/6 [00:22<00:22,  7.40s/it, avr_loss=1.17]`, redrawn with a
  bare `\\r` (never a newline until it closes); nested bars (sampling, validation) add `\\n` and
  cursor-up `ESC[A`;
- Rich log records (`2026-12-01 23:12:02 INFO     message      file.py:123`), where the time column is
  blank when it repeats and, without COLUMNS, messages wrap at 80 columns onto continuation lines
  indented by 29 spaces;
- anything else, line by line (prints, tracebacks).

UTF-8 is decoded incrementally and lines split on `\\r` and `\\n` in any chunking; ANSI escapes are
dropped; a Rich record glued to the end of a bar draw, and a complete draw at the end of the data
without its line end yet, are read at once. The patterns are ``sdscripts_format``'s.
"""

from __future__ import annotations

import codecs
import re

from lora_tui.runs.sdscripts_format import (
    ANSI,
    BAR,
    BREAK,
    LEVELS,
    MAX_LINE,
    MAX_RECORD_PARTS,
    MAX_TEXT,
    RICH_HEAD,
    RICH_INDENT,
    SRC_TAIL,
    TIMESTAMP,
    RichRecord,
    cells,
)


class ConsoleLines:
    """Reads console output as it arrives and hands each thing a terminal shows to one of three hooks.

    A subclass implements `_bar(match)` (one draw of the main bar: BAR's match), `_plain(line)` (any
    other line, ANSI-free) and `_on_record(text, level)` (a complete Rich record, its wrapped lines
    joined, cut at MAX_TEXT). `_read(data)` takes more bytes; `_read_tail()` takes what is left at the
    end of output. A line without a break is cut at MAX_LINE characters, a record at MAX_RECORD_PARTS.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._after_cr = False
        self._eager: str | None = None  # bar draw at the end of the data already read (see _read)
        self._record: RichRecord | None = None

    # ------------------------------------------------------------------ hooks

    def _bar(self, m: re.Match[str]) -> None:
        raise NotImplementedError

    def _plain(self, line: str) -> None:
        raise NotImplementedError

    def _on_record(self, text: str, level: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ reading

    def _read(self, data: bytes) -> None:
        """Read more output: every line it completes, and a complete bar draw left at its end."""
        text = self._decoder.decode(data)
        if not text:
            return
        if self._after_cr and text.startswith("\n"):  # '\r\n' split across two chunks is one break
            text = text[1:]
        self._after_cr = text.endswith("\r")
        text = self._partial + text
        lines = BREAK.split(text)
        partial = lines.pop()
        for line in lines:
            self._physical(line)
        if len(partial) > MAX_LINE:
            partial = partial[:MAX_LINE]
        self._partial = partial
        self._read_eager_bar()

    def _read_tail(self) -> None:
        """End of output: the trailing partial line, and the record still open."""
        tail = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if tail:
            self._physical(tail)
        self._end_record()

    def _read_eager_bar(self) -> None:
        """Read a complete bar draw sitting at the end of the data, without waiting for its line end."""
        partial = self._partial
        if not partial.startswith("steps:"):
            return
        if self._eager is not None and partial.startswith(self._eager):
            return
        m = BAR.match(partial)
        if m:
            self._eager = partial[: m.end()]
            self._end_record()
            self._bar(m)

    def _physical(self, raw: str) -> None:
        """One line as split on \\r / \\n, before ANSI escapes are removed."""
        if len(raw) > MAX_LINE:
            raw = raw[:MAX_LINE]
        if self._eager is not None:
            eager, self._eager = self._eager, None
            if raw.startswith(eager):
                rest = raw[len(eager):]
                if rest.strip():
                    self._glued(rest)
                return
        line = ANSI.sub("", raw) if "\x1b" in raw else raw
        self._line(line)

    def _line(self, line: str) -> None:
        if line.startswith("steps:"):
            m = BAR.match(line)
            if m:
                self._end_record()
                self._bar(m)
                rest = line[m.end():]
                if rest.strip():
                    self._glued(rest)
                return
        record = self._record
        if record is not None and line.startswith(RICH_INDENT):
            if len(record.parts) < MAX_RECORD_PARTS:
                record.parts.append(line[29:].rstrip())
            return
        if record is not None:
            self._end_record()
        if line.startswith((" " * 19, "1", "2")):  # Rich head: blank time column or a timestamp
            m = RICH_HEAD.match(line)
            if m:
                self._start_record(line, m)
                return
        self._plain(line)

    def _glued(self, rest: str) -> None:
        """Text that followed a bar draw on the same line: tqdm's padding, then usually a Rich record."""
        stripped = rest.lstrip(" ")
        if TIMESTAMP.match(stripped):
            self._line(stripped)
        elif stripped.startswith(LEVELS):
            self._line(" " * 20 + stripped)
        else:
            self._line(stripped)

    def _start_record(self, line: str, m: re.Match[str]) -> None:
        rest = m.group(2)
        width: int | None = None
        src = SRC_TAIL.search(rest)
        if src:
            width = cells(line) - 29 - len(src.group(1)) - 1
            rest = rest[: src.start(1)]
        self._record = RichRecord(level=m.group(1), parts=[rest.strip()], width=width)

    def _end_record(self) -> None:
        record, self._record = self._record, None
        if record is not None:
            self._on_record(record.text()[:MAX_TEXT], record.level)

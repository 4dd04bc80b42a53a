"""The last meaningful lines of a trainer's log: what a failed run's reason should say.

Not the whole traceback and not an exit code: the exception line of the last traceback (skipping
launchers' own wrappers such as accelerate's ``CalledProcessError``), else the last lines that are
not progress bars.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
NEWLINES = re.compile(r"\r\n|\r|\n")
BAR = re.compile(r"\d+%\|.*\|")
EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Failure)\b:?")
WRAPPERS = ("subprocess.CalledProcessError", "CalledProcessError", "ChildFailedError",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError")


def clean_lines(text: str) -> list[str]:
    """Lines as a person reads them: ANSI escapes removed, carriage-return redraws split, blanks dropped."""
    return [line.strip() for line in NEWLINES.split(ANSI.sub("", text)) if line.strip()]


def read_tail(path: Path, size: int = 65536) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def exception_line(lines: list[str]) -> str | None:
    """The exception that ended the last traceback in ``lines``, if any."""
    found = None
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and EXCEPTION.match(line) and not line.startswith(WRAPPERS):
            found = line
            in_traceback = False
    return found


def failure_lines(path: Path, keep: int = 2) -> list[str]:
    """The exception line of the last traceback in the log, else its last ``keep`` lines that are
    not progress bars; [] for an empty log."""
    lines = [line for line in clean_lines(read_tail(path)) if not BAR.search(line)]
    found = exception_line(lines)
    if found:
        return [found[:500]]
    return [line[:500] for line in lines[-keep:]]

"""The run contract's files, owned here and only here: status.json and events.jsonl.

Every writer (the built-in trainer, the supervisor, a standalone ``python -m lora_tui.train``) and
every reader (``lora-tui runs``, ``watch``, the TUI) goes through this module, so the format and its
meaning live in one place. Torch-free and textual-free: the trainer imports it too.

- status.json is replaced atomically (temporary file, fsync, rename): a reader sees the old or the
  new file, never half of one. One process owns it at a time: the supervisor when there is one,
  else the trainer.
- events.jsonl is append-only. Each event is one ``write()`` of a whole line on an ``O_APPEND``
  descriptor, so the trainer and the supervisor can both append without tearing each other's lines.
  A failed write (a full disk) never stops training: the event is dropped, counted, and reported
  by a ``warn`` event once writing works again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_tui.core.fsio import WriteError, atomic_write_text

STATUS = "status.json"
EVENTS = "events.jsonl"
LOG = "train.log"
STOP_REQUEST = "stop-request.json"
RUN_LOCK = ".supervisor.lock"

MAX_LINE = 1 << 20  # no event line is longer; anything longer is damage

STATES = ("queued", "starting", "running", "stopping", "finished", "stopped", "failed", "crashed")
ACTIVE = frozenset({"starting", "running", "stopping"})
FINAL = frozenset({"finished", "stopped", "failed", "crashed"})

# The fields every status.json has (readers must also accept files with fewer or more).
STATUS_FIELDS: dict[str, Any] = {
    "state": "queued", "pid": None, "pgid": None, "host": None, "started_at": None, "ended_at": None,
    "exit_code": None, "reason": None, "last_step": 0, "total_steps": None,
}


def clean(value: Any) -> Any:
    """JSON has no NaN/inf: they are written as null (a NaN loss is reported by an error event)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def event_line(kind: str, fields: dict[str, Any], now: float | None = None) -> bytes:
    """One event as the bytes of one line: ``t`` and ``kind`` first, then the fields."""
    if "kind" in fields:
        raise ValueError("an event's own field cannot be called 'kind'")
    t = fields.pop("t", None) if "t" in fields else None
    record = {"t": round(t if t is not None else (now if now is not None else time.time()), 3), "kind": kind,
              **fields}
    return (json.dumps(clean(record), ensure_ascii=False, default=str) + "\n").encode("utf-8")


# -- status.json ---------------------------------------------------------------------------------
def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """Replace status.json atomically."""
    atomic_write_text(Path(run_dir) / STATUS, json.dumps(clean(status), indent=1) + "\n")


INT_FIELDS = ("pid", "pgid", "pid_start", "trainer_pid", "trainer_pid_start", "last_step", "total_steps",
              "exit_code", "epoch", "epochs")
FLOAT_FIELDS = ("started_at", "ended_at", "created_at", "loss", "loss_avg", "peak_vram_mb")
STR_FIELDS = ("state", "reason", "host", "boot_id", "backend", "model", "output", "last_state", "launch", "name")


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def sanitize(status: dict[str, Any]) -> dict[str, Any]:
    """The known fields with the types readers rely on (a wrong type reads as unset), others as they are:
    one damaged or hand-edited status.json must not break the listing of every run."""
    out = dict(status)
    for key in INT_FIELDS:
        if key in out:
            out[key] = as_int(out[key])
    for key in FLOAT_FIELDS:
        if key in out:
            out[key] = as_float(out[key])
    for key in STR_FIELDS:
        if key in out and not isinstance(out[key], str):
            out[key] = None
    procs = out.get("procs")
    out["procs"] = [[p[0], p[1]] for p in procs if isinstance(p, list) and len(p) == 2
                    and as_int(p[0]) and as_int(p[1]) is not None] if isinstance(procs, list) else []
    return out


def read_status(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """(status, problem): a missing or damaged status.json gives ``{}`` and a one-line problem."""
    path = Path(run_dir) / STATUS
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return {}, "status.json is missing"
    except OSError as exc:
        return {}, f"status.json cannot be read: {exc.strerror or exc}"
    except ValueError:
        return {}, "status.json is not JSON (damaged)"
    if not isinstance(data, dict):
        return {}, "status.json is not a JSON object (damaged)"
    return sanitize(data), None


def new_status(**fields: Any) -> dict[str, Any]:
    return {**STATUS_FIELDS, **fields}


# -- events.jsonl --------------------------------------------------------------------------------
class EventLog:
    """Appends events to one run's events.jsonl; never raises on a write failure (see module doc)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / EVENTS
        self.dropped = 0
        self.last_error: str | None = None
        self._fd: int | None = None
        self._torn = False  # a failed write may have left half a line: start the next on its own line

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def append(self, kind: str, /, **fields: Any) -> bool:
        """Append one event; False when it could not be written (counted in ``dropped``)."""
        data = event_line(kind, fields)
        try:
            fd = self._open()
            if self.dropped:
                data = event_line("warn", {"code": "events_lost", "message": (
                    f"{self.dropped} events could not be written ({self.last_error}); the run went on")}) + data
            if self._torn:
                data = self._mend(fd) + data
            self._write_all(fd, data)
            self.dropped = 0
            return True
        except OSError as exc:
            self.dropped += 1
            self.last_error = os.strerror(exc.errno) if exc.errno else str(exc)
            self._torn = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)
            return False

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def _mend(self, fd: int) -> bytes:
        """After a failed write: a newline first if the file no longer ends with one."""
        self._torn = False
        size = os.fstat(fd).st_size
        with open(self.path, "rb") as f:
            if size:
                f.seek(size - 1)
                return b"" if f.read(1) == b"\n" else b"\n"
        return b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def append_event(run_dir: Path, kind: str, /, **fields: Any) -> bool:
    """One-off append (opens and closes the file): for the rare events of short-lived commands."""
    log = EventLog(run_dir)
    try:
        return log.append(kind, **fields)
    finally:
        log.close()


def parse_event(raw: bytes) -> dict[str, Any] | None:
    """A line of events.jsonl as a dict, or None for a torn, damaged or foreign line."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        return None
    return event


def tail_events(run_dir: Path, limit: int = 1000, *, block: int = 65536) -> list[dict[str, Any]]:
    """The last ``limit`` events, read backwards from the end of the file in blocks (a million-line
    file costs what its last lines cost). A torn last line (a writer killed mid-line) is skipped."""
    return tail_events_at(run_dir, limit, block=block)[0]


def tail_events_at(run_dir: Path, limit: int = 1000, *, block: int = 65536) -> tuple[list[dict[str, Any]], int]:
    """:func:`tail_events` and the offset just past the last whole line they were read from (where an
    :class:`EventTail` goes on, so a line being written right now is read once, when complete)."""
    path = Path(run_dir) / EVENTS
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return [], 0
    with f:
        size = f.seek(0, os.SEEK_END)
        pos, rest, end = size, b"", None
        lines: list[bytes] = []
        while pos > 0 and len(lines) <= limit:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            parts = (f.read(step) + rest).split(b"\n")
            if end is None:  # the first block read: what follows the last newline is an unfinished line
                end = size - len(parts[-1])
                parts[-1] = b""
            rest = parts[0] if pos > 0 else b""
            if len(rest) > MAX_LINE:  # no event is that long: garbage (zeros after a power loss), dropped
                rest = b""
            lines[:0] = [p for p in (parts[1:] if pos > 0 else parts) if p.strip() and len(p) <= MAX_LINE]
        if end is None:
            end = size
    events = [e for e in map(parse_event, lines[-limit - 1:]) if e is not None]
    return events[-limit:], end


class EventTail:
    """Follows events.jsonl as it grows: each :meth:`read` returns the complete new lines' events.

    Keeps only a byte offset and a partial last line, so following a long run costs what its new
    lines cost; a file that shrank (replaced) is read again from the start.
    """

    def __init__(self, run_dir: Path, *, start_at_end: bool = False) -> None:
        self.path = Path(run_dir) / EVENTS
        self.offset = 0
        self._partial = b""
        if start_at_end:
            try:
                self.offset = self.path.stat().st_size
            except OSError:
                self.offset = 0

    def read(self, max_bytes: int = 8 << 20) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < self.offset:  # truncated or replaced
                    self.offset, self._partial = 0, b""
                if size == self.offset:
                    return []
                f.seek(self.offset)
                data = f.read(max_bytes)
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:  # not an event line: drop it rather than grow without end
            self._partial = b""
        return [e for e in map(parse_event, lines) if e is not None]


def iter_all_events(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every event from the start (for small files and tests; readers use the tail or the sampler)."""
    try:
        with open(Path(run_dir) / EVENTS, "rb") as f:
            for raw in f:
                event = parse_event(raw)
                if event is not None:
                    yield event
    except OSError:
        return


def end_unstarted(run_dir: Path, status: dict[str, Any], state: str, reason: str,
                  exit_code: int | None = None) -> None:
    """Record the end of a run no trainer ever ran for (stopped or taken out of the queue before it
    started, refused by its supervisor): status.json and the end event say the same."""
    write_status(run_dir, new_status(**{**status, "state": state, "reason": reason, "exit_code": exit_code,
                                        "ended_at": time.time()}))
    append_event(run_dir, "end", state=state, reason=reason, exit_code=exit_code, last_step=0)


# -- the stop request ------------------------------------------------------------------------------
def write_stop_request(run_dir: Path, mode: str, by: str) -> None:
    """Record who asked for a stop and how (``graceful`` or ``now``), so that whoever ends the run,
    and every reader after a kill, can say "stopped" rather than "crashed"."""
    with contextlib.suppress(WriteError):  # the signal still goes out; only the explanation is lost
        atomic_write_text(Path(run_dir) / STOP_REQUEST,
                          json.dumps({"mode": mode, "by": by, "t": time.time(), "pid": os.getpid()}) + "\n")


def read_stop_request(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / STOP_REQUEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the run's lock --------------------------------------------------------------------------------
def hold_lock(run_dir: Path, wait_s: float = 0.0) -> int | None:
    """An exclusive lock on the run (a supervisor's for its life; ``lora-tui stop``'s for a moment);
    None if someone else holds it after ``wait_s``."""
    try:
        fd = os.open(Path(run_dir) / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)

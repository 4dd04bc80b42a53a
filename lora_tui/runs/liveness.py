"""Is the process a status.json names still the one that wrote it?

A pid alone lies: after a kill -9 and a few hours, the number can belong to anything. A process is
identified by (host, boot id, pid, start time in clock ticks since boot), read from /proc on Linux.
A zombie (exited, not yet reaped by its parent) counts as gone. On another host nothing can be
checked, and the answer says so rather than guessing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BOOT_ID: str | None = None


def boot_id() -> str | None:
    """This boot's id: a process started before a reboot is gone whatever its pid says."""
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            _BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID or None


def hostname() -> str:
    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2:].decode("ascii", "replace").split()


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _children(pid: int) -> list[int] | None:
    """Children of ``pid`` from /proc/<pid>/task/*/children (cheap), None where the kernel lacks it."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, …): through the children lists when the
    kernel has them (a few reads), else by reading every process's parent once."""
    out, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        if children is None:
            return _descendants_by_scan(pid)
        out += children
        todo += children
    return out


def _descendants_by_scan(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields is not None and len(fields) > 2 else None


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start: int | None
    host: str
    boot: str | None

    def to_json(self, prefix: str = "") -> dict[str, Any]:
        """Status fields for this process; ``prefix`` ``trainer_`` names the trainer beside the owner
        (both run on the owner's host and boot)."""
        fields: dict[str, Any] = {f"{prefix}pid": self.pid, f"{prefix}pid_start": self.start}
        if not prefix:
            fields.update(host=self.host, boot_id=self.boot)
        return fields


def identify(pid: int | None = None) -> ProcessId:
    pid = os.getpid() if pid is None else pid
    return ProcessId(pid, start_ticks(pid), hostname(), boot_id())


def _proc_available() -> bool:
    return os.path.isdir("/proc/self")


def is_alive(pid: Any, start: Any = None, host: Any = None, boot: Any = None) -> bool | None:
    """True: that very process runs; False: it is gone (or its pid was reused); None: cannot tell
    (another host, or no pid recorded)."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    if host and host != hostname():
        return None
    if boot and boot_id() and boot != boot_id():
        return False
    if not _proc_available():  # not Linux: the pid is all there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = start_ticks(pid)
    if now is None:
        return False
    return not (isinstance(start, int) and now != start)


def status_alive(status: dict[str, Any], prefix: str = "") -> bool | None:
    """:func:`is_alive` for the process a status.json records under ``prefix`` (``""`` or ``trainer_``)."""
    return is_alive(status.get(f"{prefix}pid"), status.get(f"{prefix}pid_start"),
                    status.get("host"), status.get("boot_id"))

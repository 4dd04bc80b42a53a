"""A project's run queue: runs created now, started one after another by one drainer process.

``runs/queue.json`` lists the waiting run ids in order; every edit holds ``runs/.queue.lock`` (an
OS lock: a killed editor releases it). The drainer (``python -m lora_tui.runs.queue PROJECT``) holds
``runs/.queue-drainer.lock`` for its whole life, so there is never more than one, and a killed one
is noticed by the next ``lora-tui`` command that finds runs waiting and the lock free: it starts a
new drainer, which waits for whatever still trains and goes on. A run that fails does not stop the
queue. The drainer waits while any run of the project is active (a direct run too): one GPU, one
run at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.fsio import atomic_write_text
from lora_tui.runs import contract, reader

QUEUE = "queue.json"
QUEUE_LOCK = ".queue.lock"
DRAINER_LOCK = ".queue-drainer.lock"
DRAINER_LOG = ".queue-drainer.log"
POLL_S = 2.0


def _runs(root: Path) -> Path:
    return Path(root) / "runs"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    runs = _runs(root)
    try:
        runs.mkdir(parents=True, exist_ok=True)
        fd = os.open(runs / QUEUE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LoraTuiError(f"cannot lock the queue: {exc.strerror or exc}", path=runs,
                           hint="the project's runs/ must be a folder you can write") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _valid_id(run_id: str) -> bool:
    """A run id as lora-tui makes them: a plain folder name under runs/, never a path."""
    return bool(run_id) and "/" not in run_id and "\\" not in run_id and not run_id.startswith(".")


def _read(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((_runs(root) / QUEUE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load(root: Path) -> list[str]:
    items = _read(root).get("items")
    return [str(i) for i in items if _valid_id(str(i))] if isinstance(items, list) else []


def _save(root: Path, items: list[str], current: str | None = None) -> None:
    """``current``: the run the drainer took last (kept until the next one), so a listing shows it
    even in the moment between leaving the queue and its supervisor taking over."""
    data = {"items": items, "current": current if current is not None else _read(root).get("current")}
    atomic_write_text(_runs(root) / QUEUE, json.dumps(data, indent=1) + "\n")


def _taken_unstarted(root: Path) -> str | None:
    """The run the last drainer took from the queue but never started (it was killed in between)."""
    current = _read(root).get("current")
    if isinstance(current, str) and _valid_id(current):
        status, _ = contract.read_status(_runs(root) / current)
        if status.get("state") == "queued" and status.get("pid") is None:
            return current
    return None


def pending(root: Path) -> list[str]:
    """Every run the queue still owes a start: the one taken but not started, then the waiting ones."""
    taken = _taken_unstarted(root)
    return ([taken] if taken else []) + [i for i in _load(root) if i != taken]


def waiting(root: Path) -> list[str]:
    """The queued run ids, in the order they will start."""
    return _load(root)


def enqueue(root: Path, run_id: str) -> int:
    """Append a run; returns its position (1 = next)."""
    with _locked(root):
        items = [i for i in _load(root) if i != run_id] + [run_id]
        _save(root, items)
        return len(items)


def _find(items: list[str], ref: str) -> str:
    matches = [i for i in items if i == ref] or [i for i in items if i.startswith(ref)]
    if len(matches) != 1:
        raise LoraTuiError(f"{'no' if not matches else 'more than one'} queued run matches {ref!r}",
                           hint="lora-tui queue PROJECT lists them")
    return matches[0]


def remove(root: Path, ref: str) -> str:
    """Take a run out of the queue; it never started, so its folder goes too. It is marked stopped
    first, so an interruption anywhere leaves a run that reads as what it is."""
    import shutil

    with _locked(root):
        items = _load(root)
        run_id = _find(items, ref)
        run_dir = _runs(root) / run_id
        status, _ = contract.read_status(run_dir)
        removable = status.get("state") == "queued"
        if removable:
            contract.end_unstarted(run_dir, status, "stopped", "taken out of the queue before it started")
        items.remove(run_id)
        _save(root, items)
    if removable:
        shutil.rmtree(run_dir, ignore_errors=True)
    return run_id


def move(root: Path, ref: str, delta: int) -> int:
    """Move a run up (-1) or down (+1); returns its new position."""
    with _locked(root):
        items = _load(root)
        run_id = _find(items, ref)
        i = items.index(run_id)
        j = max(0, min(len(items) - 1, i + delta))
        items.insert(j, items.pop(i))
        _save(root, items)
        return j + 1


def _take_next(root: Path) -> str | None:
    """The run to start now: the one the last drainer took but never started (it was killed in
    between), else the first one waiting (ids of runs removed or started elsewhere are dropped)."""
    with _locked(root):
        taken = _taken_unstarted(root)
        if taken:
            return taken
        items = _load(root)
        while items:
            run_id = items.pop(0)
            status, _ = contract.read_status(_runs(root) / run_id)
            if status.get("state") == "queued":
                _save(root, items, current=run_id)
                return run_id
        _save(root, items)
        return None


# -- the drainer --------------------------------------------------------------------------------
def drainer_running(root: Path) -> bool:
    """True while a drainer holds its lock (asked read-only: anyone who can read the project may ask)."""
    try:
        fd = os.open(_runs(root) / DRAINER_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def active_run(root: Path) -> reader.RunInfo | None:
    for run_dir in reader.run_dirs(root):
        status, _ = contract.read_status(run_dir)
        if status.get("state") in contract.ACTIVE:
            info = reader.read_run(run_dir, tail=20)
            if info.active:
                return info
    return None


def drain(root: Path, *, poll: float = POLL_S) -> int:
    """Start the queued runs one after another; returns when the queue is empty."""
    from lora_tui.runs.launch import spawn_supervisor

    runs = _runs(root)
    runs.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(runs / DRAINER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return 0  # another drainer is at work
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        try:
            while True:
                while active_run(root) is not None:
                    time.sleep(poll)
                run_id = _take_next(root)
                if run_id is None:
                    break
                try:
                    spawn_supervisor(runs / run_id)
                except LoraTuiError as exc:
                    _give_up(runs / run_id, str(exc))
                    continue
                time.sleep(poll)
        finally:
            os.close(fd)
        # a run queued while this drainer was letting go saw it "running" and started none: look again
        if not pending(root):
            return 0


def _give_up(run_dir: Path, reason: str) -> None:
    status, _ = contract.read_status(run_dir)
    if status.get("state") in (None, "queued") and status.get("pid") is None:
        contract.end_unstarted(run_dir, status, "failed", reason, exit_code=2)


def start_drainer(root: Path) -> None:
    """Start a drainer in its own session (it outlives the command, the terminal and the app)."""
    runs = _runs(root)
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / DRAINER_LOG, "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "lora_tui.runs.queue", "--detach", str(Path(root).resolve())],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    child.wait(timeout=30)  # only the intermediate, which exits once the drainer is forked off


def ensure_draining(root: Path) -> str | None:
    """Called by lora-tui commands on a project: restart a drainer that was killed while runs wait.
    Returns a line saying so (or why it could not), or None."""
    items = pending(root)
    if not items or drainer_running(root):
        return None
    if not os.access(_runs(root), os.W_OK):
        return (f"queue: {len(items)} run(s) wait but no drainer runs, and runs/ is not writable here; "
                f"start it as the project's owner: lora-tui queue {root}")
    try:
        start_drainer(root)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"queue: {len(items)} run(s) wait but the drainer could not be started: {exc}"
    return f"queue: the drainer was not running; restarted it ({len(items)} run(s) waiting)"


def describe(root: Path) -> list[dict[str, Any]]:
    """The queue for people and scripts: the run training now (if any), then the waiting ones."""
    out: list[dict[str, Any]] = []
    current = active_run(root)
    taken = _read(root).get("current")
    if current is None and taken and (_runs(root) / str(taken)).is_dir():
        info = reader.read_run(_runs(root) / str(taken), tail=20)
        current = info if info.state == "queued" or info.active else None
    if current is not None:
        out.append({"position": 0, "id": current.id, "state": current.state, "step": current.step,
                    "total_steps": current.total_steps, "eta_s": current.eta_s})
    for i, run_id in enumerate((i for i in _load(root) if current is None or i != current.id), start=1):
        status, _ = contract.read_status(_runs(root) / run_id)
        out.append({"position": i, "id": run_id, "state": status.get("state", "missing"),
                    "backend": status.get("backend"), "created_at": status.get("created_at")})
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    detach = "--detach" in argv
    argv = [a for a in argv if a != "--detach"]
    if len(argv) != 1:
        print("usage: python -m lora_tui.runs.queue [--detach] PROJECT_DIR", file=sys.stderr)
        return 2
    if detach and os.fork():
        os._exit(0)
    return drain(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())

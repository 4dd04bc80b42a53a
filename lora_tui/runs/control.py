"""Finding a run from what a user types, stopping it, and continuing it from its last saved state."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.tomlio import parse_plain
from lora_tui.runs import backends, contract, liveness, queue, reader
from lora_tui.runs.launch import send_stop

PROJECT_FILE = "lora-tui.toml"


def find_project(start: Path) -> Path | None:
    """The project folder holding ``start`` (itself or a parent with a lora-tui.toml)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def project_of(run_dir: Path) -> Path | None:
    """The project a run folder belongs to (``PROJECT/runs/<id>``)."""
    root = run_dir.resolve().parent.parent
    return root if (root / PROJECT_FILE).is_file() else None


def resolve_in(project_root: Path, ref: str) -> Path:
    """A run of ``project_root`` by id or unique id prefix."""
    dirs = reader.run_dirs(project_root)
    exact = [d for d in dirs if d.name == ref]
    matches = exact or [d for d in dirs if d.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LoraTuiError(f"no run matches {ref!r}", path=project_root / "runs",
                           hint="lora-tui runs PROJECT lists them; give an id, a unique prefix or a run folder")
    names = ", ".join(d.name for d in matches[:4]) + (" …" if len(matches) > 4 else "")
    raise LoraTuiError(f"{ref!r} matches {len(matches)} runs: {names}", path=project_root / "runs",
                       hint="give more of the id")


def resolve_run(refs: list[str], *, cwd: Path | None = None) -> Path:
    """``[PROJECT] RUN``: RUN is a run folder, an id or a unique prefix; a project folder alone means
    its active run, else its newest one."""
    cwd = cwd or Path.cwd()
    if not 1 <= len(refs) <= 2:
        raise LoraTuiError(f"expected RUN or PROJECT RUN, got {len(refs)} names",
                           hint="e.g. lora-tui watch judy 20261201-14, or a run folder")
    if len(refs) == 2:
        project = Path(refs[0]).expanduser()
        if not (project / PROJECT_FILE).is_file():
            raise LoraTuiError("not a lora-tui project (no lora-tui.toml)", path=project,
                               hint="give the project folder first, then the run")
        return resolve_in(project, refs[1])
    (ref,) = refs
    path = Path(ref).expanduser()
    if reader.is_run_dir(path):
        return path.resolve()
    if (path / PROJECT_FILE).is_file():
        current = queue.active_run(path)
        if current is not None:
            return current.dir
        dirs = [d for d in reader.run_dirs(path) if reader.is_run_dir(d)]
        if not dirs:
            raise LoraTuiError("the project has no runs yet", path=path / "runs",
                               hint="start one: lora-tui train PROJECT")
        return dirs[0]
    project = find_project(cwd)
    if project is None:
        raise LoraTuiError(f"no run folder or project {ref!r} here", path=path,
                           hint="give a run folder, or PROJECT RUN (an id or a unique prefix)")
    return resolve_in(project, ref)


def stop_run(run_dir: Path, *, now: bool, by: str, signum: int = signal.SIGTERM) -> str:
    """Ask a run to stop; returns a line saying what happened (or that there was nothing to stop).
    ``signum`` is the graceful stop signal the built-in trainer gets (SIGINT for a Ctrl+C)."""
    info = reader.read_run(run_dir, tail=50)
    if info.state == "queued":
        root = project_of(run_dir)
        if root is not None and info.id in queue.waiting(root):
            queue.remove(root, info.id)  # under the queue's lock, which the drainer takes runs under too
            return f"{info.id}: taken out of the queue before it started"
        lock = contract.hold_lock(run_dir)
        if lock is not None:  # no supervisor has it, and none can take it while we hold this
            try:
                status, _ = contract.read_status(run_dir)
                if status.get("state") == "queued":
                    contract.end_unstarted(run_dir, status, "stopped", "stopped before it started")
                    return f"{info.id}: stopped before it started"
            finally:
                os.close(lock)
        # a supervisor is taking it over this very moment: stop it as a running run
        _wait_for_owner(run_dir)
        info = reader.read_run(run_dir, tail=50)
    if info.state == "unknown":
        raise LoraTuiError(f"cannot tell whether {info.id} still runs: {info.reason}", path=run_dir,
                           hint="look for its processes (ps -ef | grep lora_tui) and end them with kill")
    if not info.active:
        return f"{info.id}: already ended ({info.state}); nothing to stop"
    backend = backends.get(str(info.status.get("backend") or "builtin"))
    whom = send_stop(run_dir, info.status, now=now, by=by, signum=signum,
                     trainer_signal=backend.stop_signal or signum, group=backend.stop_group)
    if not whom:
        return f"{info.id}: its processes are gone; it reads {reader.read_run(run_dir, tail=50).state}"
    how = "at once" if now else "after its current step (the built-in trainer saves the LoRA and its state first)"
    return f"{info.id}: asked the {whom} to stop {how}"


def _wait_for_owner(run_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = contract.read_status(run_dir)
        if status.get("pid") is not None or status.get("state") != "queued":
            return
        time.sleep(0.05)


def wait_for_end(run_dir: Path, timeout: float | None = None, poll: float = 0.5) -> reader.RunInfo:
    """The run once it has ended and its supervisor has recorded the end (see :func:`settle`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = reader.read_run(run_dir, tail=50)
        if not info.active or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(poll)
    if not info.active:
        settle(run_dir)
        info = reader.read_run(run_dir, tail=50)
    return info


def settle(run_dir: Path, timeout: float = 60.0) -> None:
    """After the trainer's end event: wait until status.json says so too (the supervisor writes it
    once the trainer has exited, which can take seconds), so whoever reads it next agrees."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = contract.read_status(run_dir)
        if status.get("state") not in contract.ACTIVE or not liveness.status_alive(status):
            return
        time.sleep(0.1)


def run_spec(run_dir: Path) -> dict[str, Any]:
    """run.toml as data (the frozen settings of a run)."""
    return parse_plain(run_dir / "run.toml", "run.toml")


def last_state(run_dir: Path) -> Path | None:
    """The newest resumable state a run saved: what its status or its save events name, else the
    newest ``*-state`` folder in state/ or output/ (where sd-scripts puts them)."""
    status, _ = contract.read_status(run_dir)
    named: list[str] = [status["last_state"]] if status.get("last_state") else []
    named += [e["path"] for e in reversed(contract.tail_events(run_dir, 2000))
              if e.get("kind") == "save" and e.get("type") == "state" and e.get("path")]
    for raw in named:
        if Path(raw).is_dir():
            return Path(raw)
    found = [p for folder in (run_dir / "state", run_dir / "output") if folder.is_dir()
             for p in folder.iterdir() if p.is_dir() and p.name.endswith("-state")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@dataclass(frozen=True)
class ResumePlan:
    """What a new run needs to continue an ended one: its project, the newest state and its settings."""

    info: reader.RunInfo
    project_root: Path
    state: Path
    backend: str | None
    model: str | None
    max_train_steps: int | None
    name: str | None


def resume_plan(run_dir: Path, *, stop_with: str = "lora-tui stop") -> ResumePlan:
    """The plan to resume ``run_dir``, or the one-line reason it cannot be (still running, no saved
    state, not inside a project); the CLI and the monitor screen say it alike (``stop_with``: their key)."""
    info = reader.read_run(run_dir, tail=20)
    if info.active:
        raise LoraTuiError(f"{info.id} is still {info.state}", path=run_dir,
                           hint=f"stop it first ({stop_with}), then resume")
    state = last_state(run_dir)
    if state is None:
        raise LoraTuiError(f"{info.id} saved no state to resume from", path=run_dir,
                           hint=f"set save_state = true, or stop runs with {stop_with} (the built-in trainer "
                                "saves its state then); start it again with lora-tui train")
    root = project_of(run_dir)
    if root is None:
        raise LoraTuiError("the run folder is not inside a project's runs/", path=run_dir,
                           hint="resume with lora-tui train PROJECT --resume STATE_DIR")
    spec = run_spec(run_dir)
    overrides, run = spec.get("overrides", {}), spec.get("run", {})
    return ResumePlan(info, root, state, run.get("backend"), overrides.get("pretrained_model_name_or_path"),
                      overrides.get("max_train_steps"), run.get("name"))

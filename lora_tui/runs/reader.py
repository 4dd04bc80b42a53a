"""Reading a run as every monitor must: the truth about its state, its latest figures, its history.

The state is concluded, never taken on trust: a status.json saying ``running`` whose processes are
gone reads ``crashed`` (or what its events or stop request prove), so no reader ever shows a dead
run as alive and nobody has to clean up after a kill -9. Reading is bounded: the last events are
read backwards from the end of events.jsonl, and the loss history of a long run is sampled at
evenly spaced offsets, so a million-line file costs about what a short one does.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.runs import contract, liveness
from lora_tui.runs.logtail import failure_lines, read_tail

SUCCESS_MARKERS = ("model saved.",)


@dataclass
class RunInfo:
    """One run as a reader concludes it (see :func:`read_run`)."""

    id: str
    dir: Path
    state: str
    reason: str | None
    status: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    model: str | None = None
    step: int = 0
    total_steps: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    loss: float | None = None
    loss_avg: float | None = None
    lr: dict[str, float] = field(default_factory=dict)
    samples_per_s: float | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    peak_vram_mb: float | None = None
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)
    gpu_note: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    output: str | None = None
    saves: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best: dict[str, Any] | None = None  # the checkpoint the user marked in the grid (`best` event)

    @property
    def active(self) -> bool:
        return self.state in contract.ACTIVE

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (time.time() if self.active else None)
        return None if end is None else max(0.0, end - self.started_at)

    def to_json(self) -> dict[str, Any]:
        return contract.clean({
            "id": self.id, "dir": str(self.dir), "state": self.state, "reason": self.reason,
            "backend": self.backend, "model": self.model, "step": self.step, "total_steps": self.total_steps,
            "epoch": self.epoch, "epochs": self.epochs, "loss": self.loss, "loss_avg": self.loss_avg,
            "lr": self.lr, "samples_per_s": self.samples_per_s, "steps_per_s": self.steps_per_s,
            "eta_s": self.eta_s, "peak_vram_mb": self.peak_vram_mb, "started_at": self.started_at,
            "ended_at": self.ended_at, "duration_s": self.duration_s, "exit_code": self.exit_code,
            "output": self.output, "pid": self.status.get("pid"), "notes": self.notes, "best": self.best})


# -- the state ----------------------------------------------------------------------------------
def _log_says_finished(run_dir: Path) -> bool:
    """sd-scripts' success line near the end of train.log (for a run whose supervisor was killed)."""
    tail = read_tail(run_dir / contract.LOG, 16384)
    return any(marker in tail for marker in SUCCESS_MARKERS)


def _queue_holds(run_dir: Path) -> bool:
    """Whether the project's queue still lists this run (waiting, or just taken by the drainer)."""
    try:
        data = json.loads((run_dir.parent / "queue.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    items = data.get("items") if isinstance(data.get("items"), list) else []
    return run_dir.name in items or data.get("current") == run_dir.name


def _last_step(status: dict[str, Any], events: list[dict[str, Any]]) -> int:
    """status.json is rewritten every few seconds; the step events are the truth between."""
    steps = [e["step"] for e in events if e.get("kind") == "step" and contract.as_int(e.get("step")) is not None]
    return max([status.get("last_step") or 0, *steps])


def _procs_alive(status: dict[str, Any]) -> bool:
    """Any of the run's other processes (accelerate's workers, in groups of their own) still there."""
    return any(liveness.is_alive(pid, start, status.get("host"), status.get("boot_id"))
               for pid, start in status.get("procs") or [])


def conclude_state(run_dir: Path, status: dict[str, Any], problem: str | None,
                   events: list[dict[str, Any]]) -> tuple[str, str | None, list[str]]:
    """(state, reason, notes) for a run, from its status, its last events and its processes."""
    notes: list[str] = []
    end = next((e for e in reversed(events) if e.get("kind") == "end"), None)
    if end is not None and status.get("started_at") and (contract.as_float(end.get("t")) or 0) < \
            status["started_at"] - 1:
        end = None  # an end older than the process that owns the run now is not its end
    state = status.get("state")
    if problem:
        notes.append(problem)
        if end is not None:
            return str(end.get("state") or "failed"), end.get("reason"), notes
        return "unknown", f"{problem}; its process cannot be checked", notes
    if state not in contract.ACTIVE:
        if state == "queued" and status.get("pid") is None:
            created = status.get("created_at") or 0
            if created and time.time() - created > 120:
                if status.get("launch") != "queue":
                    return "crashed", "never started: the command that launched it ended before its supervisor " \
                                      "started", notes
                if not _queue_holds(run_dir):
                    return "crashed", "never started: it is in no queue (the command that queued it, or the " \
                                      "queue's drainer, was interrupted); start it again with lora-tui resume " \
                                      "or lora-tui train", notes
        return str(state or "unknown"), status.get("reason"), notes
    if end is not None:  # the trainer recorded its end but its owner died before updating status.json
        return str(end.get("state") or "failed"), end.get("reason"), notes
    owner = liveness.status_alive(status)
    trainer = liveness.status_alive(status, "trainer_") if status.get("trainer_pid") else None
    if owner is None and trainer is None:
        host = status.get("host")
        if host and host != liveness.hostname():
            notes.append(f"running on host {host}: its processes cannot be checked from here")
        return str(state), status.get("reason"), notes
    if owner or trainer or _procs_alive(status):
        if not owner and status.get("supervised"):
            what = "its progress is no longer followed" if status.get("backend") == "sd-scripts" else \
                "GPU memory is no longer sampled"
            notes.append(f"the supervisor is gone; the trainer still runs ({what})")
        if state == "starting" and any(e.get("kind") in ("start", "step") for e in events):
            state = "running"  # the trainer said so before status.json was next written
        return str(state), status.get("reason"), notes
    stop = contract.read_stop_request(run_dir)
    last = _last_step(status, events)
    if stop is not None:
        return "stopped", f"stopped by lora-tui stop ({stop.get('mode', 'graceful')}) after step {last}", notes
    if status.get("backend") == "sd-scripts" and _log_says_finished(run_dir):
        return "finished", "finished (train.log says the model was saved; the supervisor was gone)", notes
    who = "the supervisor and the trainer are" if status.get("trainer_pid") else "the trainer is"
    reason = f"{who} gone without recording an end (killed?) after step {last}"
    said = failure_lines(run_dir / contract.LOG, keep=1)
    if said:
        reason += f"; train.log ends with: {said[0]}"
    return "crashed", reason, notes


# -- figures ------------------------------------------------------------------------------------
def _rate(steps: deque[dict[str, Any]] | list[dict[str, Any]]) -> float | None:
    """Steps per second over the last steps since the last (re)start, wall clock (pauses for saving
    and sampling included: that is what the remaining steps will cost too)."""
    if len(steps) < 2:
        return None
    first, last = steps[0], steps[-1]
    dt = float(last["t"]) - float(first["t"])
    ds = int(last["step"]) - int(first["step"])
    return ds / dt if dt > 0 and ds > 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class FigureTracker:
    """Folds events into a :class:`RunInfo`'s figures, one event at a time: the one-shot reader
    feeds it a tail, a live monitor feeds it each new line, and both show the same numbers."""

    def __init__(self, info: RunInfo, window: int = 200) -> None:
        self.info = info
        self.recent: deque[dict[str, Any]] = deque(maxlen=window)

    def add(self, event: dict[str, Any]) -> None:
        """Fold one event in; fields of the wrong type (a damaged line, another tool) count as absent."""
        info, kind = self.info, event.get("kind")
        num, whole = contract.as_float, contract.as_int
        if kind == "start":
            self.recent.clear()
            info.total_steps = whole(event.get("total_steps")) or info.total_steps
            info.epochs = whole(event.get("epochs")) or info.epochs
            info.backend = info.backend or _text(event.get("backend"))
            info.model = info.model or _text(event.get("model"))
        elif kind == "step" and whole(event.get("step")) is not None and num(event.get("t")) is not None:
            if info.state == "starting":
                info.state = "running"  # status.json is rewritten every few seconds; the steps are now
            step = whole(event["step"]) or 0
            self.recent.append({"t": num(event["t"]), "step": step})
            info.step = max(info.step, step)
            info.epoch = whole(event.get("epoch")) or info.epoch
            info.loss = num(event.get("loss"))
            info.loss_avg = num(event.get("loss_avg")) if "loss_avg" in event else info.loss_avg
            lr = event.get("lr")
            if isinstance(lr, dict):
                info.lr = {str(k): v for k, v in lr.items() if num(v) is not None}
            info.samples_per_s = num(event.get("samples_per_s"))
            info.total_steps = whole(event.get("total_steps")) or info.total_steps
            peak = num(event.get("mem_peak_mb"))
            if peak is not None and (info.peak_vram_mb is None or peak > info.peak_vram_mb):
                info.peak_vram_mb = peak
        elif kind == "gpu":
            if event.get("available") is False:
                info.gpu_note = _text(event.get("reason")) or "no GPU"
            elif whole(event.get("index")) is not None:
                gpu = {k: num(event.get(k)) for k in ("used_mb", "total_mb", "util_pct", "proc_used_mb")}
                info.gpus[int(event["index"])] = {**gpu, "name": _text(event.get("name")), "t": num(event.get("t"))}
                used = gpu["proc_used_mb"]
                if used is not None and (info.peak_vram_mb is None or used > info.peak_vram_mb):
                    info.peak_vram_mb = used
        elif kind == "best" and _text(event.get("path")):
            info.best = {"path": event["path"], "label": _text(event.get("label")) or Path(event["path"]).name,
                         "step": whole(event.get("step"))}
        elif kind == "save":
            info.saves.append(event)
            del info.saves[:-50]
            if event.get("type", "lora") == "lora" and _text(event.get("path")):
                info.output = event["path"]

    def refresh(self) -> None:
        """Rate and ETA from the recent steps (call after adding a batch of events)."""
        info = self.info
        rate = _rate(self.recent) if info.active else None  # an ended run has no current speed
        info.steps_per_s = rate
        info.eta_s = None
        if rate and info.total_steps:
            info.eta_s = max(0.0, (int(info.total_steps) - info.step) / rate)


def _fill_figures(info: RunInfo, events: list[dict[str, Any]]) -> FigureTracker:
    status = info.status
    info.step = int(status.get("last_step") or 0)
    info.total_steps = status.get("total_steps")
    info.epoch = status.get("epoch")
    info.epochs = status.get("epochs")
    info.output = status.get("output")
    info.peak_vram_mb = status.get("peak_vram_mb")
    tracker = FigureTracker(info)
    for event in events:
        tracker.add(event)
    tracker.refresh()
    return tracker


def read_run(run_dir: Path, tail: int = 1000,
             read: tuple[dict[str, Any], str | None] | None = None) -> RunInfo:
    """A run as every reader must see it: concluded state, the last ``tail`` events and figures.
    ``read``: its status.json as the caller just read it (status, problem)."""
    run_dir = Path(run_dir)
    status, problem = read if read is not None else contract.read_status(run_dir)
    events = contract.tail_events(run_dir, tail) if tail else []
    state, reason, notes = conclude_state(run_dir, status, problem, events)
    end = next((e for e in reversed(events) if e.get("kind") == "end"), None)
    info = RunInfo(id=run_dir.name, dir=run_dir, state=state, reason=reason, status=status, events=events,
                   backend=status.get("backend"), model=status.get("model"), notes=notes,
                   started_at=status.get("started_at"), ended_at=status.get("ended_at"),
                   exit_code=status.get("exit_code"))
    if state in contract.FINAL and state != status.get("state"):  # concluded here, not recorded
        last_sign = end.get("t") if end else (events[-1].get("t") if events else None)
        info.ended_at = info.ended_at or contract.as_float(last_sign)
        info.exit_code = contract.as_int(end.get("exit_code")) if end else info.exit_code
    _fill_figures(info, events)
    return info


# -- history ------------------------------------------------------------------------------------
def _step_points(lines: list[bytes]) -> list[tuple[int, float | None, float | None, float, dict[str, Any] | None]]:
    out = []
    for raw in lines:
        if b'"step"' not in raw:
            continue
        event = contract.parse_event(raw)
        if event is None or event.get("kind") != "step" or not isinstance(event.get("step"), int):
            continue
        lr = event.get("lr")
        out.append((event["step"], event.get("loss"), event.get("loss_avg"), float(event.get("t") or 0),
                    lr if isinstance(lr, dict) else None))
    return out


def _mean(values: list[float | None]) -> float | None:
    good = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(good) / len(good) if good else None


def _bucket(points: list[tuple[int, float | None, float | None, float, dict[str, Any] | None]],
            max_points: int) -> list[dict[str, Any]]:
    """At most ``max_points`` points: consecutive points averaged, the step (and lr) of each bucket's last."""
    if not points:
        return []
    size = max(1, math.ceil(len(points) / max_points))
    out = []
    for i in range(0, len(points), size):
        chunk = points[i:i + size]
        out.append({"step": chunk[-1][0], "loss": _mean([p[1] for p in chunk]),
                    "loss_avg": _mean([p[2] for p in chunk]), "t": chunk[-1][3], "lr": chunk[-1][4]})
    return out


def loss_history(run_dir: Path, max_points: int = 2000, *, read_whole_below: int = 4 << 20,
                 probe: int = 2048) -> list[dict[str, Any]]:
    """Loss over the whole run in at most ``max_points`` points (``step``, ``loss``, ``loss_avg``, ``t``,
    ``lr``: the learning rates of the bucket's last step, or None).

    A small file is read whole and averaged in buckets. A large one is probed at ``max_points``
    evenly spaced offsets, averaging the step events found in ``probe`` bytes at each: bounded work
    whatever the length of the run, at the price of not seeing every spike between probes.
    """
    path = Path(run_dir) / contract.EVENTS
    try:
        size = path.stat().st_size
    except OSError:
        return []
    if size <= read_whole_below:
        with open(path, "rb") as f:
            return _bucket(_step_points(f.read().split(b"\n")), max_points)
    out: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for i in range(max_points):
            f.seek(size * i // max_points)
            lines = f.read(probe).split(b"\n")[1:-1]  # whole lines only
            points = _step_points(lines)
            if points:
                bucket = _bucket(points, 1)[0]
                if not out or bucket["step"] > out[-1]["step"]:
                    out.append(bucket)
    return out


# -- finding runs -------------------------------------------------------------------------------
def run_dirs(project_root: Path) -> list[Path]:
    """A project's run folders, newest first (ids start with their UTC creation time)."""
    runs = Path(project_root) / "runs"
    try:
        entries = [e for e in os.scandir(runs) if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []
    return [Path(os.path.abspath(e.path)) for e in sorted(entries, key=lambda e: _natural(e.name), reverse=True)]


def _natural(name: str) -> list[Any]:
    """Run ids in time order, ``…-judy-10`` after ``…-judy-9`` (two runs started in the same second)."""
    return [(1, int(part), "") if part.isdigit() else (0, 0, part) for part in re.split(r"(\d+)", name)]


def list_runs(project_root: Path) -> list[RunInfo]:
    """Every run of a project, newest first, read cheaply (a short tail each: enough for the last
    loss, the rate and the ETA)."""
    out = []
    for run_dir in run_dirs(project_root):
        read = contract.read_status(run_dir)
        if read[1] == "status.json is missing" and not (run_dir / "run.toml").exists():
            continue  # not a run folder (something the user put there)
        # an active run needs steps enough for its rate; an ended one only its last figures
        tail = 200 if read[0].get("state") in contract.ACTIVE else 12
        try:
            out.append(read_run(run_dir, tail=tail, read=read))
        except Exception as exc:  # one run we cannot make sense of must not hide the others
            out.append(RunInfo(id=run_dir.name, dir=run_dir, state="unknown", status={},
                               reason=f"cannot read this run: {type(exc).__name__}: {exc}"))
    return out


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / contract.STATUS).exists() or (path / "run.toml").exists())



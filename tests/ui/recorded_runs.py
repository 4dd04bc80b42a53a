"""Recorded run folders for the run screens' tests: the files a real run leaves, with fixed times.

Each writer makes ``PROJECT/runs/<id>/`` with status.json, events.jsonl, train.log and, where it
fits, output/ and samples/. Times are fixed (T0), so snapshots do not move with the clock; a
"running" run names the test process itself as its live owner, so the reader concludes it alive.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from lora_tui.runs import contract, liveness

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
FIXTURES = Path(__file__).resolve().parents[1] / "runs" / "fixtures"


def _write_events(run_dir: Path, events: list[dict[str, Any]]) -> None:
    with open(run_dir / contract.EVENTS, "w", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(contract.clean(event)) + "\n")


def _steps(n: int, *, t0: float, per_s: float = 2.0, start: int = 1, total: int,
           nan_at: int | None = None) -> list[dict[str, Any]]:
    out = []
    for step in range(start, n + 1):
        loss = 0.3 + 0.15 * math.exp(-step / 40) + 0.04 * math.sin(step * 1.7)
        lr = {"unet": 1e-4 * min(1.0, step / 20), "text_encoder": 5e-5 * min(1.0, step / 20)}
        out.append({"t": t0 + step / per_s, "kind": "step", "step": step, "epoch": 1 + step * 4 // (total + 1),
                    "loss": float("nan") if nan_at is not None and step >= nan_at else loss,
                    "loss_avg": loss, "lr": lr, "samples_per_s": 2 * per_s,
                    "mem_alloc_mb": 3000.0, "mem_peak_mb": 4200.0 + step})
    return out


def _gpu(t: float, used: float) -> dict[str, Any]:
    return {"t": t, "kind": "gpu", "index": 0, "uuid": "GPU-0", "name": "NVIDIA Test 24GB", "used_mb": used,
            "total_mb": 24564.0, "util_pct": 97.0, "proc_used_mb": used - 400}


def _start(total: int, backend: str = "builtin") -> dict[str, Any]:
    return {"t": T0, "kind": "start", "total_steps": total, "steps_per_epoch": total // 4, "epochs": 4,
            "batch_size": 2, "num_processes": 1, "backend": backend, "model": "/models/sd15-tiny.safetensors"}


def _run_dir(project: Path, run_id: str, backend: str) -> Path:
    run_dir = project / "runs" / run_id
    (run_dir / "output").mkdir(parents=True)
    (run_dir / "run.toml").write_text(f'[run]\nid = "{run_id}"\nbackend = "{backend}"\n', "utf-8")
    return run_dir


def _status(run_dir: Path, **fields: Any) -> None:
    contract.write_status(run_dir, contract.new_status(created_at=T0 - 5, **fields))


def _image(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), color).save(path)


def finished(project: Path, run_id: str = "20270115-080000-judy") -> Path:
    run_dir = _run_dir(project, run_id, "builtin")
    total = 400
    events = [_start(total)]
    for step_event in _steps(total, t0=T0, total=total):
        events.append(step_event)
        if step_event["step"] % 50 == 0:
            events.append(_gpu(step_event["t"], 9000.0 + step_event["step"]))
        if step_event["step"] % 200 == 0:
            name = f"judy-{step_event['step']:06d}.safetensors"
            (run_dir / "output" / name).write_bytes(b"\0" * 4096)
            events.append({"t": step_event["t"], "kind": "save", "step": step_event["step"], "epoch": 2,
                           "path": str(run_dir / "output" / name), "type": "lora"})
            sample = run_dir / "samples" / f"judy_{step_event['step']:06d}_00.png"
            _image(sample, (200, 60 + step_event["step"] // 4, 80))
            events.append({"t": step_event["t"], "kind": "sample", "step": step_event["step"],
                           "paths": [str(sample)], "prompts": ["sks woman, [red] scarf, portrait"]})
    (run_dir / "output" / "judy.safetensors").write_bytes(b"\0" * 8192)
    events.append({"t": T0 + 201, "kind": "save", "step": total, "epoch": 4,
                   "path": str(run_dir / "output" / "judy.safetensors"), "type": "lora"})
    events.append({"t": T0 + 202, "kind": "end", "state": "finished", "reason": "finished", "exit_code": 0})
    _write_events(run_dir, events)
    (run_dir / contract.LOG).write_text("steps: 100%|##########| 400/400\nmodel saved.\n", "utf-8")
    _status(run_dir, state="finished", started_at=T0, ended_at=T0 + 202, exit_code=0, reason="finished",
            last_step=total, total_steps=total, backend="builtin", model="/models/sd15-tiny.safetensors",
            output=str(run_dir / "output" / "judy.safetensors"), peak_vram_mb=9400.0)
    return run_dir


def running(project: Path, run_id: str = "20270115-090000-judy") -> Path:
    """A run whose owner is this very process (alive as long as the test), 120 of 400 steps done."""
    run_dir = _run_dir(project, run_id, "builtin")
    total = 400
    events = [_start(total), *_steps(120, t0=T0, total=total)]
    events += [_gpu(T0 + i * 5, 8000.0 + 30 * i) for i in range(12)]
    _write_events(run_dir, events)
    (run_dir / contract.LOG).write_text("loading model\nsteps:  30%|###       | 120/400 [01:00<02:20, 2.00it/s]\n",
                                        "utf-8")
    me = liveness.identify().to_json()
    _status(run_dir, state="running", **me, started_at=T0, last_step=120, total_steps=total, backend="builtin",
            model="/models/sd15-tiny.safetensors")
    return run_dir


def crashed(project: Path, run_id: str = "20270115-070000-judy") -> Path:
    """status.json says running, but its process is long gone (a kill -9, a reboot)."""
    run_dir = _run_dir(project, run_id, "builtin")
    total = 400
    _write_events(run_dir, [_start(total), {"t": T0 + 1, "kind": "gpu", "available": False, "reason": "NVML not found"},
                            *_steps(57, t0=T0, total=total)])
    (run_dir / contract.LOG).write_text(
        "step 57\nTraceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n"
        "    step()\nRuntimeError: CUDA error: an illegal memory access was encountered\n", "utf-8")
    _status(run_dir, state="running", pid=2 ** 22 - 3, pid_start=1, host=liveness.hostname(),
            boot_id=liveness.boot_id(), started_at=T0, last_step=57, total_steps=total, backend="builtin")
    return run_dir


def nan_stop(project: Path, run_id: str = "20270115-060000-judy") -> Path:
    run_dir = _run_dir(project, run_id, "builtin")
    total = 400
    events = [_start(total), *_steps(90, t0=T0, total=total, nan_at=88)]
    events.append({"t": T0 + 45, "kind": "error", "code": "nan", "step": 88,
                   "message": "loss is NaN at step 88: lower the learning rate", "last_good_save": None})
    events.append({"t": T0 + 46, "kind": "end", "state": "failed", "reason": "loss is NaN at step 88",
                   "exit_code": 3})
    _write_events(run_dir, events)
    (run_dir / contract.LOG).write_text("step 87 loss 0.31\nerror: loss is NaN at step 88\n", "utf-8")
    _status(run_dir, state="failed", started_at=T0, ended_at=T0 + 46, exit_code=3, reason="loss is NaN at step 88",
            last_step=88, total_steps=total, backend="builtin")
    return run_dir


def sd_scripts(project: Path, run_id: str = "20270115-050000-judy") -> Path:
    """An sd-scripts run: its real log (a fixture), and the events the sd-scripts backend's follower
    derives from that log (spread over time, as they were written while it trained)."""
    from lora_tui.runs.sdscripts_log import SdScriptsFollower

    run_dir = _run_dir(project, run_id, "sd-scripts")
    log = (FIXTURES / "sd_scripts_finished_2epochs.log").read_bytes()
    follower = SdScriptsFollower()
    events = follower.feed(log, T0) + follower.finish(T0)
    for i, event in enumerate(events):
        event["t"] = T0 + 8 * i
    total = max(e["step"] for e in events if e["kind"] == "step")
    events.append({"t": T0 + 8 * len(events), "kind": "end", "state": "finished", "reason": "finished",
                   "exit_code": 0})
    _write_events(run_dir, events)
    (run_dir / contract.LOG).write_bytes(log)
    _status(run_dir, state="finished", started_at=T0, ended_at=T0 + 8 * len(events), exit_code=0,
            reason="finished", last_step=total, total_steps=total, backend="sd-scripts")
    return run_dir


def big_finished(project: Path, n: int, run_id: str = "20270115-040000-big") -> Path:
    """A finished run of ``n`` step events (written fast, for the first-frame bench)."""
    run_dir = _run_dir(project, run_id, "builtin")
    with open(run_dir / contract.EVENTS, "w", encoding="utf-8") as f:
        f.write(json.dumps(_start(n)) + "\n")
        for step in range(1, n + 1):
            loss = 0.3 + 0.1 * math.sin(step / 500)
            f.write(f'{{"t": {T0 + step * 0.05:.3f}, "kind": "step", "step": {step}, "epoch": 1, "loss": {loss:.5f}, '
                    '"loss_avg": 0.3, "lr": {"unet": 0.0001}}\n')
        f.write(json.dumps({"t": T0 + n * 0.05 + 1, "kind": "end", "state": "finished", "reason": "finished",
                            "exit_code": 0}) + "\n")
    (run_dir / contract.LOG).write_text("model saved.\n", "utf-8")
    _status(run_dir, state="finished", started_at=T0, ended_at=T0 + n * 0.05 + 1, exit_code=0,
            reason="finished", last_step=n, total_steps=n, backend="builtin")
    return run_dir

"""Run-layer budgets (issue #8), each against a baseline measured in the same run.

    python bench/bench_runs.py [--quick] [--json out.json]

1. Reading a run with a 1,000,000-line events.jsonl (status, the last 1,000 events and a loss history
   of ≤ 2,000 points): budget ≤ 0.3 s. Baseline: parsing every line once (what a naive reader does).
2. ``lora-tui watch`` on a run writing 20 step events a second: budget ≤ 2 % of a core. Baseline: a
   bare Python process polling the same file for new bytes at the same 0.5 s beat.
3. The supervisor while its trainer writes 20 step events and 20 log lines a second: budget ≤ 1 % of
   a core plus the copying of the trainer's output (here: none, the trainer writes train.log itself).
   Baseline: the same bare poller.
4. ``lora-tui runs`` on a project with 200 runs: budget ≤ 0.3 s. In-process ``list_runs`` timed
   directly; the command timed against ``python -c 'import lora_tui.cli'`` (interpreter start-up).
CPU is read from /proc/<pid>/stat (user + system ticks) over a window after start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_tui.runs import contract, reader  # noqa: E402
from tests.runs.helpers import fake_run, project  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def write_big_run(run_dir: Path, lines: int) -> None:
    run_dir.mkdir(parents=True)
    contract.write_status(run_dir, contract.new_status(state="finished", last_step=lines, total_steps=lines))
    t0 = time.time() - lines
    with open(run_dir / "events.jsonl", "wb") as f:
        f.write(contract.event_line("start", {"total_steps": lines, "t": t0}))
        chunk = []
        for step in range(1, lines + 1):
            chunk.append(contract.event_line("step", {
                "t": t0 + step, "step": step, "epoch": 1 + step // 10000, "loss": 0.1 + (step % 97) / 1000,
                "loss_avg": 0.12, "lr": {"textencoder": 5e-5, "unet": 1e-4}, "samples_per_s": 12.5,
                "mem_alloc_mb": 5123.4, "mem_peak_mb": 6234.5}))
            if len(chunk) == 10000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def bench_read(tmp: Path, lines: int, repeat: int) -> dict:
    run = tmp / "big" / "runs" / "20260101-000000-big"
    write_big_run(run, lines)
    size = (run / "events.jsonl").stat().st_size
    ours = []
    for _ in range(repeat):
        started = time.perf_counter()
        info = reader.read_run(run, tail=1000)
        history = reader.loss_history(run, 2000)
        ours.append(time.perf_counter() - started)
    assert len(info.events) == 1000 and 0 < len(history) <= 2000
    started = time.perf_counter()
    with open(run / "events.jsonl", "rb") as f:
        parsed = sum(1 for line in f if contract.parse_event(line) is not None)
    naive = time.perf_counter() - started
    assert parsed == lines + 1
    return {"lines": lines, "bytes": size, "ours_s": statistics.median(ours), "naive_full_parse_s": naive,
            "speedup": naive / statistics.median(ours), "history_points": len(history), "budget_s": 0.3}


def writer(run_dir: Path, rate: float, stop: threading.Event, log: bool = False) -> None:
    """A trainer's writing pattern: step events at ``rate`` a second, a gpu event every 2 s."""
    events = contract.EventLog(run_dir)
    step, next_gpu = 0, time.monotonic()
    out = open(run_dir / "train.log", "ab") if log else None  # noqa: SIM115
    while not stop.is_set():
        step += 1
        events.append("step", step=step, epoch=1, loss=0.1, loss_avg=0.1, lr={"unet": 1e-4}, samples_per_s=40.0)
        if out is not None:
            out.write(f"step {step}/1000000 loss 0.1000\n".encode())
            out.flush()
        if time.monotonic() >= next_gpu:
            events.append("gpu", index=0, uuid="GPU-0", used_mb=5000.0, total_mb=24000.0, util_pct=97,
                          proc_used_mb=4800.0)
            next_gpu += 2.0
        time.sleep(1 / rate)
    events.close()


POLLER = """
import os, sys, time
path, offset = sys.argv[1], 0
while True:
    try:
        with open(path, 'rb') as f:
            f.seek(offset); offset += len(f.read())
    except OSError:
        pass
    time.sleep(0.5)
"""


def measure_cpu(pid: int, window: float, warmup: float) -> float:
    time.sleep(warmup)
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def bench_watch(tmp: Path, window: float) -> dict:
    root = project(tmp / "watch")
    run = root / "runs" / "20260101-000000-w"
    run.mkdir(parents=True)
    contract.write_status(run, contract.new_status(state="running", **_me(), total_steps=1_000_000))
    contract.append_event(run, "start", total_steps=1_000_000, epochs=1, backend="builtin")
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(run, 20.0, stop), daemon=True)
    thread.start()
    import pty

    master, slave = pty.openpty()  # a real terminal: the redrawn status line, the costlier mode
    watch = subprocess.Popen([sys.executable, "-m", "lora_tui", "watch", str(run)], stdout=slave, stderr=slave)
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(run / "events.jsonl")])
    try:
        ours = measure_cpu(watch.pid, window, 3.0)
        base = measure_cpu(poller.pid, window, 0.0)
    finally:
        for p in (watch, poller):
            p.kill()
            p.wait()
        stop.set()
        thread.join()
    return {"watch_cpu_pct": ours, "bare_poller_cpu_pct": base, "budget_pct": 2.0, "window_s": window}


def _me() -> dict:
    from lora_tui.runs import liveness

    return liveness.identify().to_json()


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


FAKE_FAST = """
import sys, time, threading
sys.path.insert(0, {root!r})
from bench.bench_runs import writer
from pathlib import Path
stop = threading.Event()
writer(Path(sys.argv[sys.argv.index('--run_dir') + 1]), 20.0, stop, log=False)
"""


def bench_supervisor(tmp: Path, window: float) -> dict:
    root = project(tmp / "sup")
    run = fake_run(root, command=[sys.executable, "-c", FAKE_FAST.format(root=str(ROOT)), "--run_dir", "RUN"])
    spec = (run / "run.toml").read_text().replace('"RUN"', json.dumps(str(run)))
    (run / "run.toml").write_text(spec)
    from lora_tui.runs.launch import spawn_supervisor

    pid = spawn_supervisor(run)
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(run / "events.jsonl")])
    try:
        time.sleep(3.0)
        before = sum(1 for _ in contract.iter_all_events(run))
        ours = measure_cpu(pid, window, 0.0)
        written = sum(1 for _ in contract.iter_all_events(run)) - before
        assert written >= 15 * window, f"the stand-in trainer wrote only {written} events"
        base = measure_cpu(poller.pid, window, 0.0)
    finally:
        poller.kill()
        poller.wait()
        status, _ = contract.read_status(run)
        for key in ("trainer_pid", "pid"):
            if status.get(key):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(status[key]), 9)
    return {"supervisor_cpu_pct": ours, "bare_poller_cpu_pct": base, "budget_pct": 1.0, "window_s": window,
            "events_per_s": written / window}


def bench_runs_list(tmp: Path, runs: int, repeat: int) -> dict:
    root = project(tmp / "many")
    t0 = time.time() - 86400
    for i in range(runs):
        run = root / "runs" / f"2026{i:04d}-000000-r"
        run.mkdir(parents=True)
        contract.write_status(run, contract.new_status(state="finished", last_step=2000, total_steps=2000,
                                                      started_at=t0, ended_at=t0 + 3600, output="x.safetensors"))
        with open(run / "events.jsonl", "wb") as f:
            f.write(b"".join(contract.event_line("step", {"t": t0 + s, "step": s, "loss": 0.1, "loss_avg": 0.1,
                                                          "lr": {"unet": 1e-4}}) for s in range(1, 2001)))
            f.write(contract.event_line("end", {"state": "finished", "exit_code": 0, "t": t0 + 3600}))
    inproc = []
    for _ in range(repeat):
        started = time.perf_counter()
        listed = reader.list_runs(root)
        inproc.append(time.perf_counter() - started)
    assert len(listed) == runs
    cli, base = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lora_tui", "runs", str(root), "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        cli.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lora_tui.cli"], check=True)
        base.append(time.perf_counter() - started)
    return {"runs": runs, "list_runs_s": statistics.median(inproc), "cli_s": statistics.median(cli),
            "interpreter_startup_s": statistics.median(base),
            "cli_minus_startup_s": statistics.median(cli) - statistics.median(base), "budget_s": 0.3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter windows, 200,000 lines")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lines = 200_000 if args.quick else 1_000_000
    window = 8.0 if args.quick else 20.0
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        results = {"read": bench_read(tmp, lines, 5), "watch": bench_watch(tmp, window),
                   "supervisor": bench_supervisor(tmp, window), "runs": bench_runs_list(tmp, 200, 5)}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

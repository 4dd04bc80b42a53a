"""Run-screen budgets (issue #11): watching a live run, opening a huge finished one, output over a slow link.

    python bench/bench_run_screens.py [--window 60] [--lines 1000000] [--json out.json]

1. CPU: the real app (``LoraTuiApp`` with the monitor open) in a pseudo-terminal of 160×48 while a
   writer appends 20 step events a second (a gpu event every 2 s, a train.log line per step).
   CPU time of the app process (user + system, /proc) over ``--window`` seconds of wall time;
   budget ≤ 2 % of a core. Baseline in the same run: a bare Python process polling the same file.
2. First frame: the monitor pushed on a finished run with ``--lines`` step events; time until its
   header is on screen (budget ≤ 1 s), and until the loss history from the start is plotted.
   Baseline in the same run: ``reader.read_run`` of the same run (status + last 1,000 events).
3. Bytes: everything the app writes to the terminal over the window, at the default frame rate and
   with ``TEXTUAL_FPS`` lowered; budget < 20 kB/s.
Also: the cost of one plot redraw (textual-plotext) at the monitor's size, to say why it was kept.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_runs import POLLER, cpu_seconds, write_big_run, writer  # noqa: E402
from lora_tui.runs import contract, liveness, reader  # noqa: E402

COLS, ROWS = 160, 48


def make_project(root: Path) -> Path:
    import shutil

    shutil.copytree(ROOT / "sample_project", root)
    return root


def serve(root: Path, run_dir: Path) -> None:
    """The app as a user has it, with the monitor of ``run_dir`` on top (runs in the pty)."""
    from lora_tui.core import project
    from lora_tui.ui.app import LoraTuiApp
    from lora_tui.ui.screens import monitor
    from lora_tui.ui.screens.monitor import MonitorScreen

    if os.environ.get("BENCH_PLOT_EVERY_S"):  # to find what the plots cost (bench only)
        monitor.PLOT_EVERY_S = monitor.LR_EVERY_S = float(os.environ["BENCH_PLOT_EVERY_S"])

    class BenchApp(LoraTuiApp):
        def _open_overview(self) -> None:
            super()._open_overview()
            self.push_screen(MonitorScreen(run_dir))

    BenchApp(project.load(root)).run()


def live_run(root: Path) -> Path:
    run = root / "runs" / "20270101-000000-live"
    run.mkdir(parents=True)
    contract.write_status(run, contract.new_status(state="running", **liveness.identify().to_json(),
                                                   started_at=time.time(), total_steps=1_000_000,
                                                   backend="builtin"))
    contract.append_event(run, "start", total_steps=1_000_000, epochs=1, backend="builtin", model="bench")
    return run


def _pty() -> tuple[int, int]:
    import pty

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    return master, slave


class Counter:
    """Drains the pty (a terminal that reads everything) and counts the bytes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.bytes = fd, 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)


def watch_app(root: Path, run: Path, window: float, fps: str | None, warmup: float = 8.0) -> dict:
    """CPU % and output bytes/s of the app watching ``run`` (the writer must be running)."""
    master, slave = _pty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    if fps:
        env["TEXTUAL_FPS"] = fps
    app = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(root), str(run)],
                           stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    counter = Counter(master)
    try:
        time.sleep(warmup)
        c0, b0, t0 = cpu_seconds(app.pid), counter.bytes, time.monotonic()
        time.sleep(window)
        c1, b1, t1 = cpu_seconds(app.pid), counter.bytes, time.monotonic()
    finally:
        app.kill()
        app.wait()
        os.close(slave)
    return {"cpu_pct": 100 * (c1 - c0) / (t1 - t0), "bytes_per_s": (b1 - b0) / (t1 - t0),
            "window_s": t1 - t0, "fps": fps or "default"}


def bench_live(tmp: Path, window: float, low_fps: str) -> dict:
    root = make_project(tmp / "live")
    run = live_run(root)
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(run, 20.0, stop, True), daemon=True)
    thread.start()
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(run / "events.jsonl")])
    try:
        default = watch_app(root, run, window, None)
        lowered = watch_app(root, run, window, low_fps)
        time.sleep(1.0)
        c0, t0 = cpu_seconds(poller.pid), time.monotonic()
        time.sleep(min(window, 20.0))
        base = 100 * (cpu_seconds(poller.pid) - c0) / (time.monotonic() - t0)
        steps = reader.read_run(run, tail=5).step
    finally:
        poller.kill()
        poller.wait()
        stop.set()
        thread.join()
    return {"default_fps": default, "lowered_fps": lowered, "bare_poller_cpu_pct": base, "steps_written": steps,
            "budget_cpu_pct": 2.0, "budget_bytes_per_s": 20000}


async def _first_frame(root: Path, run: Path) -> dict:
    """Times from pushing the monitor to the first frame the app paints for it, and to the first frame
    painted after the loss history landed (frames are caught where the app hands them to the driver)."""
    from lora_tui.core import project
    from lora_tui.ui.app import LoraTuiApp
    from lora_tui.ui.screens.monitor import MonitorScreen
    from lora_tui.ui.widgets.run.plots import LossPlot

    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(COLS, ROWS)) as pilot:
        await pilot.pause(0.5)
        frames: list[tuple[float, bool]] = []
        screen = MonitorScreen(run)
        display = app._display

        def caught(shown, renderable):  # type: ignore[no-untyped-def]
            if shown is screen and renderable is not None:
                frames.append((time.perf_counter(), screen.history_loaded))
            return display(shown, renderable)

        app._display = caught  # type: ignore[method-assign]
        t0 = time.perf_counter()
        app.push_screen(screen)
        while not any(loaded for _, loaded in frames):
            await asyncio.sleep(0.001)
        app._display = display  # type: ignore[method-assign]
        first = frames[0][0] - t0
        history = next(t for t, loaded in frames if loaded) - t0
        header = screen.query_one("#run-head").text.plain
        points = len(screen.series.loss.raw)
        plot = screen.query_one(LossPlot)  # one redraw at its on-screen size, as the timer does
        draws = []
        for i in range(20):
            started = time.perf_counter()
            plot.draw(-i - 1)
            plot.render()
            draws.append(time.perf_counter() - started)
        draws.sort()
        size = (plot.size.width, plot.size.height)
    assert "finished" in header, header
    return {"header_s": first, "history_plotted_s": history, "points": points,
            "loss_plot_redraw_ms": 1000 * draws[len(draws) // 2], "loss_plot_size": size}


def bench_first_frame(tmp: Path, lines: int) -> dict:
    root = make_project(tmp / "big")
    run = root / "runs" / "20270101-000000-big"
    write_big_run(run, lines)
    status, _ = contract.read_status(run)
    contract.write_status(run, {**status, "started_at": time.time() - lines, "ended_at": time.time()})
    started = time.perf_counter()
    reader.read_run(run, tail=1000)
    baseline = time.perf_counter() - started
    result = asyncio.run(_first_frame(root, run))
    return {**result, "lines": lines, "bytes": (run / "events.jsonl").stat().st_size,
            "baseline_read_run_s": baseline, "budget_s": 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--low-fps", default="5")
    parser.add_argument("--first-frame-only", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        first = bench_first_frame(Path(tmp), args.lines)
        print(f"monitor on a finished run of {first['lines']:,} events ({first['bytes'] / 1e6:.0f} MB): header on "
              f"screen {first['header_s']:.3f} s (budget <= 1 s), loss history plotted "
              f"{first['history_plotted_s']:.3f} s ({first['points']} points); baseline read_run "
              f"{first['baseline_read_run_s']:.3f} s")
        print(f"one loss-plot redraw (textual-plotext, {first['loss_plot_size'][0]}x{first['loss_plot_size'][1]} "
              f"cells): {first['loss_plot_redraw_ms']:.1f} ms")
        if args.first_frame_only:
            return 0
        live = bench_live(Path(tmp), args.window, args.low_fps)
        for key in ("default_fps", "lowered_fps"):
            r = live[key]
            print(f"watching 20 events/s at {COLS}x{ROWS}, TEXTUAL_FPS={r['fps']}: CPU {r['cpu_pct']:.2f} % of a core "
                  f"(budget <= 2 %), output {r['bytes_per_s'] / 1000:.1f} kB/s (budget < 20 kB/s) over "
                  f"{r['window_s']:.0f} s")
        print(f"baseline: a bare poller of the same file {live['bare_poller_cpu_pct']:.2f} %; "
              f"{live['steps_written']} steps written")
    if args.json:
        Path(args.json).write_text(json.dumps({"first_frame": first, "live": live}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

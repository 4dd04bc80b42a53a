"""A stand-in for the built-in trainer's process behaviour, so supervisor tests run in seconds.

It writes the same events through ``runs.contract`` (status.json only when no supervisor owns it),
prints a progress line per step, and, like the real trainer, stops after its current step on
SIGTERM/SIGINT, saving first (a second signal stops it at once). Options make it misbehave:
exit early with a traceback, exit without an end event, spawn worker processes in its group.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lora_tui.runs import contract, liveness


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run_dir", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-seconds", type=float, default=0.05)
    p.add_argument("--crash-at", type=int, default=0, help="raise at this step (a traceback, exit 1, no end event)")
    p.add_argument("--workers", type=int, default=0, help="child processes in our group, like data-loader workers")
    p.add_argument("--session-workers", type=int, default=0,
                   help="child processes in sessions of their own, like accelerate's multi-process workers")
    p.add_argument("--startup-seconds", type=float, default=0.0)
    args = p.parse_args()
    run_dir = Path(args.run_dir)
    stop: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(args.workers)]
    for _ in range(args.session_workers):  # not ours to wait for: they outlive us, as torch elastic's do
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True)
    events = contract.EventLog(run_dir)
    owns_status = os.environ.get("LORA_TUI_SUPERVISED") != "1"
    status = contract.new_status(state="starting", **liveness.identify().to_json(), started_at=time.time())
    if owns_status:
        contract.write_status(run_dir, status)
    time.sleep(args.startup_seconds)
    events.append("start", total_steps=args.steps, steps_per_epoch=args.steps, epochs=1, batch_size=1,
                  num_processes=1, backend="builtin", model="fake")
    output = run_dir / "output"
    output.mkdir(exist_ok=True)

    def end(state: str, reason: str, code: int, step: int) -> int:
        events.append("end", state=state, reason=reason, exit_code=code, last_step=step)
        if owns_status:
            contract.write_status(run_dir, {**status, "state": state, "reason": reason, "exit_code": code,
                                            "last_step": step, "ended_at": time.time()})
        for w in workers:
            if w.poll() is not None:
                print(f"worker {w.pid} died of {w.returncode}", flush=True)
                return 1
            w.kill()
        return code

    for step in range(1, args.steps + 1):
        time.sleep(args.step_seconds)
        if step == args.crash_at:
            raise RuntimeError(f"fake trainer crashed at step {step}")
        events.append("step", step=step, epoch=1, loss=1.0 / step, loss_avg=1.0 / step, lr={"unet": 1e-4},
                      samples_per_s=10.0, mem_alloc_mb=None, mem_peak_mb=None)
        print(f"step {step}/{args.steps} loss {1.0 / step:.4f}", flush=True)
        if stop:
            lora = output / f"fake-step{step:08d}.safetensors"
            lora.write_bytes(b"lora")
            events.append("save", step=step, epoch=1, path=str(lora), type="lora")
            state = run_dir / "state" / f"fake-step{step:08d}-state"
            state.mkdir(parents=True, exist_ok=True)
            events.append("save", step=step, epoch=1, path=str(state), type="state")
            name = signal.Signals(stop[0]).name
            return end("stopped", f"stopped by {name} after step {step}", 128 + stop[0], step)
    lora = output / "fake.safetensors"
    lora.write_bytes(b"lora")
    events.append("save", step=args.steps, epoch=1, path=str(lora), type="lora")
    return end("finished", "finished", 0, args.steps)


if __name__ == "__main__":
    sys.exit(main())

"""Measure SdScriptsFollower's speed on a long synthetic sd-scripts log (not a test; run it by hand).

    python bench/bench_sdscripts_log.py [MEGABYTES]

The log is the real finished-run fixture's start, then a ten-hour-like body: two bar draws per step
(tqdm's update() draw and the set_postfix() draw), and every 500 steps an epoch line, a checkpoint
save with a Rich-logged state save (400-column records) and a sample block; fed in 64 KiB chunks, as
a supervisor reading a pipe would.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_tui.runs.sdscripts_log import SdScriptsFollower

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "runs" / "fixtures" / "sd_scripts_finished_2epochs.log"


def rich(message: str, src: str = "train_util.py:5964") -> str:
    return " " * 20 + "INFO     " + message.ljust(400 - 29 - len(src) - 1) + " " + src + "\n"


def synthetic_log(megabytes: float) -> bytes:
    head = FIXTURE.read_bytes()
    head = head[: head.index(b"\rsteps:")]
    target = int(megabytes * 1024 * 1024)
    total = max(1, target // 200)
    parts: list[str] = []
    size = len(head)
    step = 0
    while size < target:
        step += 1
        bar = (f"\rsteps: {100 * step // total:3d}%|█████     | {step}/{total} "
               f"[1:02:{step % 60:02d}<5172:34:35,  7.40s/it")
        chunk = f"{bar}, avr_loss=0.117]{bar}, avr_loss=0.{step % 1000:03d}]"
        if step % 500 == 0:
            chunk += (f"\nepoch {step // 500}/999\n\n"
                      f"saving checkpoint: /data/runs/x/output/judy-{step:06d}.safetensors\n"
                      + rich("") + rich(f"saving state at step {step}")
                      + rich(f"save train state to /data/runs/x/output/judy-step{step:08d}-state/train_state.json "
                             f"at epoch 1 step {step}", "train_network.py:946")
                      + rich("generating sample images at step / サンプル画像生成 ステップ: 1")
                      + rich("prompt: a photo of sks dog, 日本語") + rich("seed: 1"))
        parts.append(chunk)
        size += len(chunk.encode())
    return head + "".join(parts).encode()


def feed_all(data: bytes) -> tuple[SdScriptsFollower, int]:
    follower = SdScriptsFollower()
    events = 0
    for i in range(0, len(data), 65536):
        events += len(follower.feed(data[i:i + 65536], 0.0))
    events += len(follower.finish(0.0))
    return follower, events


def main() -> None:
    megabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
    data = synthetic_log(megabytes)
    started = time.perf_counter()
    follower, events = feed_all(data)
    elapsed = time.perf_counter() - started
    tracemalloc.start()  # a second pass, traced: tracing slows Python down several times
    feed_all(data)
    peak = tracemalloc.get_traced_memory()[1]
    print(f"{len(data) / 1e6:.1f} MB, {follower.step} steps, {events} events in {elapsed:.2f} s "
          f"({len(data) / 1e6 / elapsed:.1f} MB/s); peak traced memory while feeding {peak / 1e6:.2f} MB "
          "(the events list returned per 64 KiB chunk included)")


if __name__ == "__main__":
    main()

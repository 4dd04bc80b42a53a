"""The built-in trainer's SD1.5 step against kohya-ss/sd-scripts' own train_network.py, side by side.

    .venv/bin/python bench/bench_vs_sdscripts.py --sdscripts DIR --sdscripts-python PY \
        --model sd15.safetensors --tokenizer-cache DIR [--rounds 3] [--warmup 3] [--steps 6] [--threads 1]
        [--sdxl] [--results]

Issue 13's budget: on the CPU, full-size model shapes (random weights are fine), 256 px, batch 1, fp32,
the same LoRA settings, text encoder and U-Net trained, cached latents: our step ≥ 1.5× faster; and
with ``--sdxl`` (an SDXL model, sd-scripts' sdxl_train_network.py) the SDXL ratio, reported.

Both trainers get the very same args TOML and dataset TOML (only ``output_dir`` differs) and are
started the way lora-tui's backends start them: sd-scripts as ``<its venv>/accelerate launch
--num_cpu_threads_per_process T train_network.py --config_file …``, ours as ``python -m lora_tui.train
--dataset_config … --config_file … --run_dir …`` with ``OMP_NUM_THREADS=T`` (what accelerate sets
for sd-scripts), so both use T torch threads. Rounds alternate which one runs first.

Per-step times: the bench reads each trainer's own progress output on a pipe (sd-scripts' tqdm
``steps: …| N/M``, our ``step N/M`` line) and, the moment a step is reported, stamps it with the
monotonic clock and the CPU time (user+system) of the trainer's whole session from /proc. A step's time
is the gap between two consecutive reports; the first ``--warmup`` steps (and model loading, latent
caching, the final save) are outside every gap. Cross-checks from each side's own records: our
events.jsonl timestamps, sd-scripts' tqdm elapsed clock (whole seconds). The machine's other load is
the CPU time the whole machine spent outside the two trainers during the timed steps (/proc/stat).
After each round both LoRA files are compared key by key and shape by shape: same adapters.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
SD_STEP = re.compile(rb"steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
OUR_STEP = re.compile(rb"(?:^|\n)step (\d+)/(\d+) ")


def markers(sdxl: bool) -> tuple[str, str]:
    """This bench's block markers in bench/RESULTS.md: one block per model family, so neither overwrites the other."""
    name = "bench_vs_sdscripts_sdxl" if sdxl else "bench_vs_sdscripts"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


# -- inputs ---------------------------------------------------------------------------------------


def make_dataset(folder: Path, images: int, size: int) -> None:
    """A few distinct 256 px pictures with captions (smooth colour fields plus noise, deterministic)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(images):
        base = np.stack([np.sin(6 * x + i), np.cos(5 * y - i), np.sin(4 * (x + y) + 2 * i)], axis=-1)
        pixels = ((base * 0.4 + 0.5 + rng.normal(0, 0.05, base.shape)).clip(0, 1) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text(f"sks, a photo of a red object, tag{i}, detailed", "utf-8")


def write_configs(work: Path, opts: argparse.Namespace, steps: int) -> dict[str, Path]:
    """One dataset TOML and one args TOML per side, equal but for output_dir (so the LoRAs can be compared)."""
    data = work / "img"
    make_dataset(data, opts.images, 256)
    repeats = -(-steps // opts.images)  # one epoch holds every step: no data-loader restart mid-measure
    dataset = work / "dataset.toml"
    dataset.write_text(
        '[general]\nshuffle_caption = false\ncaption_extension = ".txt"\nkeep_tokens = 0\n\n'
        "[[datasets]]\nresolution = 256\nbatch_size = 1\nenable_bucket = false\n\n"
        f"  [[datasets.subsets]]\n  image_dir = {json.dumps(str(data))}\n  num_repeats = {repeats}\n", "utf-8")
    paths = {"dataset": dataset}
    for side in ("sdscripts", "ours"):
        args = {
            "pretrained_model_name_or_path": str(opts.model), "tokenizer_cache_dir": str(opts.tokenizer_cache),
            "dataset_config": str(dataset), "output_dir": str(work / side / "output"), "output_name": "bench",
            "save_model_as": "safetensors", "network_module": "networks.lora", "network_dim": opts.dim,
            "network_alpha": opts.alpha, "learning_rate": 1e-4, "optimizer_type": "AdamW",
            "lr_scheduler": "constant", "max_train_steps": steps, "mixed_precision": "no",
            "save_precision": "fp16", "cache_latents": True, "sdpa": True, "seed": 42,
        }
        path = work / f"args-{side}.toml"
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in args.items()), "utf-8")
        paths[side] = path
    return paths


# -- observing a trainer --------------------------------------------------------------------------


def session_cpu(sid: int) -> float:
    """User+system seconds of every process in session ``sid`` (reaped children included via cutime)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2:].split()
        if int(fields[3]) == sid:  # fields[0] is state: session id is the 6th stat field
            total += sum(int(v) for v in fields[11:15])
    return total / TICK


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (all but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK


@dataclass
class Run:
    side: str
    reports: list[tuple[int, float, float, float]] = field(default_factory=list)  # step, wall, cpu, machine
    log: bytes = b""
    returncode: int = 0
    seconds: float = 0.0

    def timed(self, warmup: int) -> list[tuple[int, float, float, float]]:
        return [r for r in self.reports if r[0] >= warmup]

    def gaps(self, warmup: int) -> tuple[list[float], list[float]]:
        """(wall, cpu) seconds of each step after the warm-up."""
        rows = self.timed(warmup)
        return ([b[1] - a[1] for a, b in zip(rows, rows[1:])], [b[2] - a[2] for a, b in zip(rows, rows[1:])])

    def other_load(self, warmup: int) -> float:
        """Cores the rest of the machine kept busy while this trainer ran its timed steps."""
        rows = self.timed(warmup)
        if len(rows) < 2:
            return float("nan")
        wall = rows[-1][1] - rows[0][1]
        return ((rows[-1][3] - rows[0][3]) - (rows[-1][2] - rows[0][2])) / wall


def observe(side: str, argv: list[str], cwd: Path, env: dict[str, str], pattern: re.Pattern[bytes],
            log_path: Path) -> Run:
    """Run one trainer to its end, stamping each first report of a step with wall and CPU clocks."""
    run = Run(side)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    seen = 0
    buffer = b""
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            now, cpu, busy = time.monotonic(), session_cpu(proc.pid), machine_cpu()
            run.log += chunk
            buffer = (buffer + chunk)[-4096:]
            for match in pattern.finditer(buffer):
                step = int(match.group(1))
                if step > seen:
                    seen = step
                    run.reports.append((step, now, cpu, busy))
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        raise
    run.returncode = proc.wait()
    run.seconds = time.monotonic() - started
    log_path.write_bytes(run.log)
    if run.returncode != 0:
        tail = run.log.decode("utf-8", "replace").replace("\r", "\n").strip().splitlines()[-15:]
        raise SystemExit(f"{side} failed with exit code {run.returncode} (log: {log_path}):\n" + "\n".join(tail))
    return run


def own_record(run: Run, run_dir: Path, warmup: int) -> float | None:
    """Median step seconds from the trainer's own record, as a cross-check of the pipe stamps."""
    if run.side == "ours":
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text("utf-8").splitlines()]
        stamps = [e["t"] for e in events if e.get("kind") == "step" and e["step"] >= warmup]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return statistics.median(gaps) if gaps else None
    clock = re.findall(rb"steps:\s+\d+%\|[^|]*\|\s*(\d+)/\d+ \[(\d+):(\d+)", run.log)
    first = {int(s): int(m) * 60 + int(sec) for s, m, sec in reversed(clock)}  # first report of each step
    steps = sorted(s for s in first if s >= warmup)
    if len(steps) < 2:
        return None
    return (first[steps[-1]] - first[steps[0]]) / (steps[-1] - steps[0])  # tqdm shows whole seconds


def same_adapters(a: Path, b: Path) -> str:
    """'' when both LoRA files hold the same tensor names with the same shapes, else what differs."""
    from safetensors import safe_open

    shapes = []
    for path in (a, b):
        with safe_open(str(path), "pt") as fh:
            shapes.append({k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()})  # noqa: SIM118 (safe_open is not iterable)
    if shapes[0] == shapes[1]:
        return ""
    only = sorted(set(shapes[0]) ^ set(shapes[1]))
    return f"{len(only)} keys in one file only (first {only[:1]}), or shapes differ"


# -- the bench --------------------------------------------------------------------------------------


def commands(opts: argparse.Namespace, paths: dict[str, Path], work: Path) -> dict[str, tuple[list[str], Path, dict]]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    base.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1", COLUMNS="400")
    sd_py = Path(opts.sdscripts_python)
    accelerate = sd_py.parent / "accelerate"
    launcher = [str(accelerate), "launch"] if accelerate.exists() else [str(sd_py), "-m", "accelerate.commands.launch"]
    sd_env = dict(base, PATH=f"{sd_py.parent}{os.pathsep}{base.get('PATH', '')}")
    script = "sdxl_train_network.py" if opts.sdxl else "train_network.py"
    sd = [*launcher, "--num_cpu_threads_per_process", str(opts.threads), script,
          "--config_file", str(paths["sdscripts"])]
    ours_env = dict(base, OMP_NUM_THREADS=str(opts.threads), PYTHONPATH=str(ROOT))
    ours = [opts.python, "-m", "lora_tui.train", "--dataset_config", str(paths["dataset"]),
            "--config_file", str(paths["ours"]), "--run_dir"]  # + a fresh folder per round
    return {"sdscripts": (sd, Path(opts.sdscripts), sd_env), "ours": (ours, ROOT, ours_env)}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n {len(values)})"


def ratio_line(name: str, sd: list[float], ours: list[float], per_round: list[float]) -> str:
    return (f"{name}: sd-scripts {summary(sd)} | ours {summary(ours)} | ratio of medians "
            f"{statistics.median(sd) / statistics.median(ours):.2f}× (per round min {min(per_round):.2f}, "
            f"median {statistics.median(per_round):.2f}, max {max(per_round):.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sdscripts", required=True, help="the sd-scripts checkout (train_network.py)")
    parser.add_argument("--sdscripts-python", required=True, help="the Python of its environment")
    parser.add_argument("--model", required=True, help="SD1.5 single file or Diffusers folder")
    parser.add_argument("--tokenizer-cache", required=True, help="tokenizer_cache_dir for both")
    parser.add_argument("--sdxl", action="store_true", help="an SDXL --model: sd-scripts runs sdxl_train_network.py")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs lora_tui.train")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="steps before the first timed one")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--workdir", help="keep configs, logs and LoRAs here (default: a temp folder)")
    parser.add_argument("--json", help="write the raw per-step figures here")
    parser.add_argument("--results", action="store_true", help="replace this bench's block in bench/RESULTS.md")
    opts = parser.parse_args(argv)
    total = opts.warmup + opts.steps  # timed: the gaps from step `warmup`'s report to each later one
    with tempfile.TemporaryDirectory(prefix="bench-vs-sd-") as tmp:
        work = Path(opts.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        paths = write_configs(work, opts, total)
        cmds = commands(opts, paths, work)
        patterns = {"sdscripts": SD_STEP, "ours": OUR_STEP}
        runs: dict[str, list[Run]] = {"sdscripts": [], "ours": []}
        own: dict[str, list[float]] = {"sdscripts": [], "ours": []}
        load_before = os.getloadavg()
        for rnd in range(opts.rounds):
            order = ("sdscripts", "ours") if rnd % 2 == 0 else ("ours", "sdscripts")
            for side in order:
                argv_, cwd, env = cmds[side]
                run_dir = work / "ours" / f"run-round{rnd + 1}"
                if side == "ours":
                    argv_ = [*argv_, str(run_dir)]
                run = observe(side, argv_, cwd, env, patterns[side], work / f"{side}-round{rnd + 1}.log")
                wall, cpu = run.gaps(opts.warmup)
                if len(wall) < opts.steps:
                    log = work / f"{side}-round{rnd + 1}.log"
                    raise SystemExit(f"{side}: only {len(wall)} timed steps seen in {log}")
                runs[side].append(run)
                record = own_record(run, run_dir, opts.warmup)
                if record is not None:
                    own[side].append(record)
                print(f"round {rnd + 1} {side:9s}: step wall {statistics.median(wall):.2f} s, cpu "
                      f"{statistics.median(cpu):.2f} s (own record {record if record is None else round(record, 2)}),"
                      f" other load {run.other_load(opts.warmup):.2f} cores, whole run {run.seconds:.0f} s", flush=True)
            diff = same_adapters(work / "sdscripts" / "output" / "bench.safetensors",
                                 work / "ours" / "output" / "bench.safetensors")
            if diff:
                raise SystemExit(f"the two LoRA files differ in their adapters: {diff}")
        load_after = os.getloadavg()
    report = render(opts, runs, own, load_before, load_after)
    print(report)
    if opts.json:
        Path(opts.json).write_text(json.dumps({side: [r.reports for r in rs] for side, rs in runs.items()}), "utf-8")
    if opts.results:
        write_results(report, sdxl=opts.sdxl)
    return 0


def render(opts: argparse.Namespace, runs: dict[str, list[Run]], own: dict[str, list[float]],
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    def all_gaps(side: str, kind: int) -> list[float]:
        return [g for r in runs[side] for g in r.gaps(opts.warmup)[kind]]

    def per_round(kind: int) -> list[float]:
        return [statistics.median(s.gaps(opts.warmup)[kind]) / statistics.median(o.gaps(opts.warmup)[kind])
                for s, o in zip(runs["sdscripts"], runs["ours"])]

    wall = ratio_line("wall per step", all_gaps("sdscripts", 0), all_gaps("ours", 0), per_round(0))
    cpu = ratio_line("CPU per step", all_gaps("sdscripts", 1), all_gaps("ours", 1), per_round(1))
    others = [r.other_load(opts.warmup) for rs in runs.values() for r in rs]
    own_line = (f"own records (median of rounds): sd-scripts tqdm clock {statistics.median(own['sdscripts']):.2f} s, "
                f"ours events.jsonl {statistics.median(own['ours']):.2f} s" if own["sdscripts"] and own["ours"] else
                "own records: missing")
    lines = [
        f"bench_vs_sdscripts {datetime.date.today()} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}): {opts.rounds} rounds, "
        f"{opts.warmup} warm-up + {opts.steps} timed steps each, {opts.threads} torch thread(s), 256 px, batch 1, "
        f"fp32, LoRA dim {opts.dim} alpha {opts.alpha}, TE+U-Net, cached latents, "
        f"{'SDXL (sdxl_train_network.py)' if opts.sdxl else 'SD1.5 (train_network.py)'} model {opts.model}",
        f"- {wall}",
        f"- {cpu}",
        f"- {own_line}",
        f"- machine load: loadavg {load_before[0]:.2f} before, {load_after[0]:.2f} after; other processes kept "
        f"{statistics.median(others):.2f} cores busy during the timed steps (min {min(others):.2f}, "
        f"max {max(others):.2f})",
    ]
    return "\n".join(lines)


def write_results(report: str, *, sdxl: bool = False) -> None:
    """Put the report between this bench's markers in bench/RESULTS.md (appended the first time)."""
    start, end = markers(sdxl)
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text("utf-8")
    block = f"{start}\n```\n{report}\n```\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())

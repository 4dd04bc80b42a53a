"""Budgets of the LoRA tools (issue 14), on SD1.5-shaped LoRAs with random weights.

    .venv/bin/python bench/bench_lora.py [--rounds N] [--threads N] [--full-svd-modules N]

1. `lora inspect` on an SD1.5 rank-128 fp32 LoRA (~300 MB, text encoder + UNet, 264 modules):
   in-process `lora_inspect.inspect` and the whole `lora-tui lora inspect` subprocess (interpreter
   start included). Budget ≤ 0.2 s (headers and metadata only). Baseline in the same run:
   safetensors' own `safe_open` + `metadata()` (also header-only).
2. `lora resize` of the same file to rank 32 on the CPU, end to end (read, resize, write) via
   `lora_tui.cli.main`, against the plain per-module SVD calls in the same run: (a) the thin-QR SVD
   calls the tool itself makes (`factors.factored_svd` per module), (b) a full `torch.linalg.svd`
   of up·down (what sd-scripts' resize_lora.py computes) on the first N modules of each shape class,
   reported per module because the full run takes minutes on a shared 2-core VM. Budget ≤ 1.2× (a).
Module shapes come from the real SD1.5 configs shipped in the package, built on the meta device.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def sd15_lora(path: Path, rank: int = 128) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_tui.train.model.load import shipped_configs
    from lora_tui.train.network.file import build_metadata, save_lora
    from lora_tui.train.network.lora import LoRANetwork

    cfg = shipped_configs(False)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
        te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        net = LoRANetwork(te, unet, dim=rank, alpha=rank / 2)
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, value in net.state_dict().items():
        sd[key] = (torch.tensor(rank / 2.0) if key.endswith(".alpha")
                   else torch.randn(tuple(value.shape), generator=gen) * 0.02)
    meta = build_metadata({"network_dim": rank, "network_alpha": rank / 2, "steps": 1000, "sd_model_name": "sd15",
                           "tag_frequency": {"x": {f"tag{i}": i for i in range(2000)}}})
    save_lora(path, sd, meta)
    return sd


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared VM)")
    parser.add_argument("--full-svd-modules", type=int, default=2, help="modules per shape for the full-SVD row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lora_tui.cli import main as cli
    from lora_tui.core import lora_inspect
    from lora_tui.train.lora_tools.factors import factored_svd, split_modules

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sd15-r128.safetensors"
        sd = sd15_lora(path)
        size = path.stat().st_size / 1e6
        print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}; "
              f"file {size:.0f} MB, {len(split_modules(sd))} modules")

        import safetensors

        def baseline() -> None:
            with safetensors.safe_open(str(path), framework="pt") as f:
                f.metadata()

        inproc = timed(lambda: lora_inspect.inspect(path), args.rounds)
        base = timed(baseline, args.rounds)
        cmd = [sys.executable, "-m", "lora_tui", "lora", "inspect", str(path)]
        sub = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.rounds)
        print(f"inspect in-process median {statistics.median(inproc) * 1e3:.1f} ms "
              f"(safe_open+metadata {statistics.median(base) * 1e3:.1f} ms); "
              f"`lora-tui lora inspect` subprocess median {statistics.median(sub) * 1e3:.0f} ms; budget 200 ms")

        modules = split_modules(sd)

        def thin() -> None:
            with torch.no_grad():
                for f in modules.values():
                    up, down = f.matrices()
                    factored_svd(up, down)

        by_shape: dict[tuple, list] = {}
        for f in modules.values():
            by_shape.setdefault((tuple(f.up.shape), tuple(f.down.shape)), []).append(f)
        sample = [f for group in by_shape.values() for f in group[: args.full_svd_modules]]

        def per_module(svd) -> float:
            t = time.perf_counter()
            with torch.no_grad():
                for f in sample:
                    up, down = f.matrices()
                    svd(up, down)
            return (time.perf_counter() - t) / len(sample)

        out = Path(tmp) / "r32.safetensors"

        def ours() -> None:
            assert cli(["lora", "resize", str(path), "--dim", "32", "--out", str(out), "--force", "--quiet"]) == 0

        ours()  # warm-up, both: first-call imports and allocator growth are not the resize's
        thin()
        rows: dict[str, list[tuple[float, float]]] = {"ours": [], "thin": []}
        for i in range(args.rounds):  # interleaved, order rotated
            order = [("ours", ours), ("thin", thin)]
            for name, fn in order[i % 2:] + order[: i % 2]:
                t, c = time.perf_counter(), time.process_time()
                fn()
                rows[name].append((time.perf_counter() - t, time.process_time() - c))
        med = {n: statistics.median(w for w, _ in r) for n, r in rows.items()}
        cpu = {n: statistics.median(c for _, c in r) for n, r in rows.items()}
        paired = statistics.median(o[0] / t[0] for o, t in zip(rows["ours"], rows["thin"]))
        print("  rounds (ours / thin, wall s): " + ", ".join(
            f"{o[0]:.2f}/{t[0]:.2f}" for o, t in zip(rows["ours"], rows["thin"])))
        print(f"resize r128→32 end to end median {med['ours']:.2f} s; thin-QR SVD calls {med['thin']:.2f} s "
              f"→ ratio {med['ours'] / med['thin']:.2f}× (median of per-round ratios {paired:.2f}×; "
              f"CPU s {cpu['ours']:.2f} / {cpu['thin']:.2f} = {cpu['ours'] / cpu['thin']:.2f}×) (budget ≤ 1.2×)")
        if args.full_svd_modules:
            thin_each = per_module(factored_svd)
            full_each = per_module(lambda u, d: torch.linalg.svd(u @ d, full_matrices=False))
            print(f"per module over {len(sample)} modules ({len(by_shape)} shapes): thin-QR SVD "
                  f"{thin_each * 1e3:.1f} ms, full torch.linalg.svd (sd-scripts' call) {full_each * 1e3:.0f} ms "
                  f"→ the full-SVD calls for all {len(modules)} modules ≈ {full_each * len(modules):.0f} s")


if __name__ == "__main__":
    main()

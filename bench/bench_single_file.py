"""SD1/SD2 single-file loading: our converter (`train/model/load.py`) against diffusers' `from_single_file`.

    .venv/bin/python bench/bench_single_file.py [--model FILE] [--tokenizer-cache DIR] [--rounds N] [--json out]

Issue 13 asks to load SD1/SD2 single files through diffusers (as SDXL does) "unless a measurement or a
missing case says otherwise"; this is the measurement. Each load runs in a fresh interpreter (so
neither loader inherits the other's memory), imports done before the clock starts: wall seconds of
the load and the peak resident memory it adds (VmHWM − VmRSS before the load). Both produce float32
U-Net, VAE and text encoder from the same file, offline, with the configs shipped in the package
(diffusers gets them as a weightless Diffusers folder, as `sdxl_load` does). Rounds alternate the two
loaders after one discarded warm-up each (the file then sits in the page cache for both).

Default model: the random full-size SD1.5 file at /work/sdscripts-models/sd15-random.safetensors
(fp16, 2.1 GB) and a tiny model written by `make_tiny_model`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = Path("/work/sdscripts-models/sd15-random.safetensors")
DEFAULT_TOKENIZERS = Path("/work/sdscripts-models/tokenizer-cache")
CHILD = r"""
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, sys.argv[4])
import torch
from diffusers import StableDiffusionPipeline
from lora_tui.train.model.load import load_base_model

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
kind, model, where = sys.argv[1], sys.argv[2], sys.argv[3]
before = status("VmRSS:")
start = time.perf_counter()
if kind == "ours":
    loaded = load_base_model(model, tokenizer_cache_dir=where)
    parts = (loaded.unet, loaded.vae, loaded.text_encoder)
else:
    pipe = StableDiffusionPipeline.from_single_file(model, config=where, local_files_only=True, safety_checker=None,
                                                    feature_extractor=None, torch_dtype=torch.float32)
    parts = (pipe.unet, pipe.vae, pipe.text_encoder)
seconds = time.perf_counter() - start
params = sum(p.numel() for m in parts for p in m.parameters())
print(json.dumps({"seconds": seconds, "peak_added": status("VmHWM:") - before, "params": params}))
"""


def config_folder(into: Path, tokenizers: Path, v2: bool = False) -> Path:
    """A weightless Diffusers folder from the shipped SD1/SD2 configs, for `from_single_file(config=…)`."""
    from lora_tui.train.model.load import CONFIG_DIR

    family = "sd_v2" if v2 else "sd_v1"
    for part in ("unet", "vae", "text_encoder"):
        (into / part).mkdir(parents=True, exist_ok=True)
        config = json.loads((CONFIG_DIR / family / f"{part}.json").read_text("utf-8"))
        if part == "text_encoder":
            config.setdefault("architectures", ["CLIPTextModel"])
            config.setdefault("model_type", "clip_text_model")
        (into / part / "config.json").write_text(json.dumps(config), "utf-8")
    (into / "scheduler").mkdir(exist_ok=True)
    (into / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
        "prediction_type": "epsilon"}), "utf-8")
    (into / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None], "safety_checker": [None, None],
        "requires_safety_checker": False, "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}), "utf-8")
    source = tokenizers / "openai_clip-vit-large-patch14"
    shutil.copytree(source if source.is_dir() else tokenizers, into / "tokenizer", dirs_exist_ok=True)
    return into


def one(kind: str, model: Path, where: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(model), str(where), str(ROOT)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(model: Path, tokenizers: Path, rounds: int, folder: Path) -> dict[str, Any]:
    where = {"ours": tokenizers, "diffusers": folder}
    for kind in where:  # warm-up: the page cache, the first import of each code path
        one(kind, model, where[kind])
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in where}
    for i in range(rounds):
        for kind in (("ours", "diffusers") if i % 2 == 0 else ("diffusers", "ours")):
            runs[kind].append(one(kind, model, where[kind]))
    out = {}
    for kind, items in runs.items():
        out[kind] = {"seconds": statistics.median(r["seconds"] for r in items),
                     "peak_added_gb": statistics.median(r["peak_added"] for r in items) / 1e9,
                     "params": items[0]["params"]}
    print(f"{model.name} ({model.stat().st_size / 1e9:.2f} GB), {rounds} rounds, medians:")
    for kind, r in out.items():
        print(f"  {kind:<9}: {r['seconds']:.2f} s, peak +{r['peak_added_gb']:.2f} GB, {r['params']:,} parameters")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--tokenizer-cache", type=Path, default=DEFAULT_TOKENIZERS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        from lora_tui.train.model.tiny import make_tiny_model

        tiny = make_tiny_model(work / "tiny", single_file=True)
        tiny_folder = make_tiny_model(work / "tiny-folder")
        results["tiny"] = compare(tiny, tiny.parent, args.rounds * 2, tiny_folder)
        if args.model.is_file():
            results["full"] = compare(args.model, args.tokenizer_cache, args.rounds,
                                      config_folder(work / "configs", args.tokenizer_cache))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), "utf-8")


if __name__ == "__main__":
    main()

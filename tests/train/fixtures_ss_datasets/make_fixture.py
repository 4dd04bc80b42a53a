"""Regenerate sd_scripts_metadata.json: what kohya-ss/sd-scripts' train_network.py writes for dataset.toml.

Run with sd-scripts' own environment (see README.md); not imported by the test suite. Writes the images of
images.json (their sizes and captions are all the metadata depends on), points dataset.toml at them, trains
one step on the given SD1.5 checkpoint and keeps the dataset keys of the LoRA file's header.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from safetensors import safe_open

HERE = Path(__file__).resolve().parent


def main(sd_scripts: str, model: str, tokenizer_cache: str, work: str) -> None:
    work_dir = Path(work)
    for item in json.loads((HERE / "images.json").read_text()):
        path = work_dir / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", tuple(item["size"]), (120, 60, 30)).save(path)
        if item["caption"] is not None:
            path.with_suffix(".txt").write_text(item["caption"], encoding="utf-8")
    config = (HERE / "dataset.toml").read_text().replace('"data/', f'"{work_dir}/data/')
    (work_dir / "dataset.toml").write_text(config)
    args = f"""pretrained_model_name_or_path = "{model}"
tokenizer_cache_dir = "{tokenizer_cache}"
dataset_config = "{work_dir}/dataset.toml"
output_dir = "{work_dir}/output"
output_name = "meta"
save_model_as = "safetensors"
network_module = "networks.lora"
network_dim = 4
network_alpha = 1.0
learning_rate = 1e-4
optimizer_type = "AdamW"
lr_scheduler = "constant"
max_train_steps = 1
mixed_precision = "no"
save_precision = "fp16"
sdpa = true
seed = 42
"""
    (work_dir / "args.toml").write_text(args)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run(["accelerate", "launch", "--num_cpu_threads_per_process", "1", "train_network.py",
                    "--config_file", str(work_dir / "args.toml")], cwd=sd_scripts, env=env, check=True)
    with safe_open(str(work_dir / "output" / "meta.safetensors"), "pt") as f:
        meta = f.metadata()
    keep = {k: json.loads(meta[k]) for k in ("ss_datasets", "ss_tag_frequency", "ss_dataset_dirs")}
    (HERE / "sd_scripts_metadata.json").write_text(json.dumps(keep, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])

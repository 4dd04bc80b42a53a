"""Regenerate sd_scripts_metadata.json: what sd-scripts' train_network.py writes for dataset.toml here.

Run with sd-scripts' own environment (see README.md); the test suite imports only `write_dataset`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_dataset(root: Path) -> Path:
    """The images of layout.json under root/data; fine-tuning folders (ft/) get a JSON metadata file keyed by
    absolute image path (folder a: caption + tags, folder b: tags only), others .txt captions; the config."""
    from PIL import Image

    for folder, items in json.loads((HERE / "layout.json").read_text()).items():
        d = root / "data" / folder
        d.mkdir(parents=True, exist_ok=True)
        meta = {}
        for i, (size, caption) in enumerate(items):
            Image.new("RGB", tuple(size), (120, 60, 30)).save(d / f"{i}.png")
            if folder.startswith("db") and caption is not None:
                (d / f"{i}.txt").write_text(caption, encoding="utf-8")
            meta[str(d / f"{i}.png")] = ({"caption": caption, "tags": "extra tag, other"} if folder.endswith("a")
                                         else {"tags": caption})
        if folder.startswith("ft"):
            (root / f"{folder.split('/')[1]}.json").write_text(json.dumps(meta), encoding="utf-8")
    config = root / "dataset.toml"
    config.write_text((HERE / "dataset.toml").read_text().replace("{root}", str(root)), encoding="utf-8")
    return config


def main(sd_scripts: str, model: str, tokenizer_cache: str, work: str) -> None:
    from safetensors import safe_open

    work_dir = Path(work)
    config = write_dataset(work_dir)
    (work_dir / "args.toml").write_text(f"""pretrained_model_name_or_path = "{model}"
tokenizer_cache_dir = "{tokenizer_cache}"
dataset_config = "{config}"
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
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run(["accelerate", "launch", "--num_cpu_threads_per_process", "1", "train_network.py",
                    "--config_file", str(work_dir / "args.toml")], cwd=sd_scripts, env=env, check=True)
    with safe_open(str(work_dir / "output" / "meta.safetensors"), "pt") as f:
        meta = f.metadata()
    keep = {k: json.loads(meta[k]) for k in ("ss_datasets", "ss_tag_frequency", "ss_dataset_dirs")}
    (HERE / "sd_scripts_metadata.json").write_text(json.dumps(keep, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])

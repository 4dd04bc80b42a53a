"""Tiny projects and in-process training runs for the trainer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_tui.core import configs, project
from tests.helpers import write_images, write_project

FAST = {"network_module": "networks.lora", "network_dim": 4, "network_alpha": 4.0, "learning_rate": 1e-3,
        "optimizer_type": "AdamW", "max_train_steps": 6, "seed": 1, "max_data_loader_n_workers": 0,
        "cache_latents": True, "save_model_as": "safetensors", "output_name": "tiny"}


def tiny_project(root: Path, model: Path, *, kind: str = "caption", training: dict[str, Any] | None = None,
                 reg: bool = False, batch_size: int = 2) -> Path:
    """A project with a handful of 64 px images (8×8 latents: steps take milliseconds)."""
    subsets: list[dict[str, Any]] = []
    if kind == "caption":
        write_images(root / "data" / "a", [(64, 64)] * 4 + [(64, 96)] * 2,
                     captions={i: f"sks, tag{i}, red" for i in range(6)})
        subsets.append({"image_dir": "data/a", "num_repeats": 2, "shuffle_caption": True, "keep_tokens": 1})
    elif kind == "class":
        write_images(root / "data" / "b", [(64, 64)] * 4)
        subsets.append({"image_dir": "data/b", "num_repeats": 2, "class_tokens": "sks dog", "flip_aug": True})
    elif kind == "finetune":
        paths = write_images(root / "data" / "c", [(64, 64)] * 4)
        meta = {str(p.relative_to(root / "data" / "c")): {"caption": f"a photo {i}", "tags": "red, blue"}
                for i, p in enumerate(paths)}
        (root / "meta.json").write_text(json.dumps(meta), "utf-8")
        subsets.append({"image_dir": "data/c", "metadata_file": "meta.json", "num_repeats": 1})
    if reg:
        write_images(root / "reg" / "r", [(64, 64)] * 3, seed=9)
        subsets.append({"image_dir": "reg/r", "is_reg": True, "class_tokens": "dog", "num_repeats": 1})
    write_project(root, [{"resolution": 64, "batch_size": batch_size, "enable_bucket": True, "min_bucket_reso": 64,
                          "max_bucket_reso": 128, "bucket_reso_steps": 64, "subsets": subsets}],
                  training={**FAST, **(training or {})}, model={"pretrained_model_name_or_path": str(model)})
    return root


def train_argv(root: Path, *extra: str) -> list[str]:
    """Write the project's configs and return the trainer's command line for them."""
    generated = configs.write(project.load(root))
    return ["--dataset_config", str(generated.dataset_config), "--config_file", str(generated.args_config), *extra]


def run_training(argv: list[str], run_dir: Path) -> int:
    """Train in this process (accelerate's singletons are reset so runs do not leak settings)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from lora_tui.train.loop.args import parse_args
    from lora_tui.train.loop.train import train

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    return train(parse_args(argv), run_dir)


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text("utf-8").splitlines()]


def status(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "status.json").read_text("utf-8"))

"""The facts a LoRA file carries about its training (sd-scripts' ``ss_*`` metadata).

webui's and ComfyUI's LoRA browsers show these (tag frequencies, dataset folders, dims), and
sd-scripts' tools read them back, so they follow sd-scripts' shapes: JSON strings for the dataset
descriptions, ``str()`` of every other value.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lora_tui.train.data.dataset import TrainData
from lora_tui.train.loop.args import TrainArgs

LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_SIZE = 0x10000


def model_hashes(path: Path) -> tuple[str | None, str | None]:
    """(webui's old 8-char hash, full SHA-256) of a single-file model; (None, None) for folders.

    The full hash reads the whole file once (seconds for a 2 GB checkpoint), like sd-scripts.
    """
    if not path.is_file():
        return None, None
    with open(path, "rb") as f:
        f.seek(LEGACY_HASH_OFFSET)
        old = hashlib.sha256(f.read(LEGACY_HASH_SIZE)).hexdigest()[:8]
        f.seek(0)
        full = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            full.update(chunk)
    return old, full.hexdigest()


def _tags(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def dataset_facts(data: TrainData) -> dict[str, Any]:
    """``ss_datasets``, ``ss_tag_frequency`` and ``ss_dataset_dirs`` for a dataset-config run."""
    datasets, tag_frequency, dirs = [], {}, {}
    for ds in data.datasets:
        subsets: dict[str, dict[str, Any]] = {}
        for entry in ds.entries:
            folder = entry.path.parent.name
            label = entry.subset.label
            sub = subsets.setdefault(label, {
                "img_count": 0, "num_repeats": entry.repeats, "color_aug": entry.subset.color_aug,
                "flip_aug": entry.subset.flip_aug, "random_crop": entry.subset.random_crop,
                "shuffle_caption": entry.subset.caption.shuffle_caption,
                "keep_tokens": entry.subset.caption.keep_tokens, "image_dir": folder, "is_reg": entry.is_reg,
                "class_tokens": entry.caption if entry.caption_source == "class_tokens" else None})
            sub["img_count"] += 1
            freq = tag_frequency.setdefault(folder, Counter())
            freq.update(_tags(entry.caption))
        for sub in subsets.values():
            if not sub["is_reg"]:
                name = sub["image_dir"]
                while name in dirs:
                    name += " (2)"
                dirs[name] = {"n_repeats": sub["num_repeats"], "img_count": sub["img_count"]}
        datasets.append({
            "is_dreambooth": True, "batch_size_per_device": ds.batch_size,
            "num_train_images": sum(e.repeats for e in ds.entries if not e.is_reg),
            "num_reg_images": sum(e.repeats for e in ds.entries if e.is_reg),
            "resolution": list(ds.resolution), "enable_bucket": len(ds.buckets) > 1,
            "tag_frequency": {k: dict(v) for k, v in tag_frequency.items()},
            "bucket_info": {"buckets": {i: {"resolution": list(b), "count": len(items)}
                                        for i, (b, items) in enumerate(sorted(ds.buckets.items()))}},
            "subsets": list(subsets.values()),
        })
    return {"datasets": datasets, "tag_frequency": {k: dict(v) for k, v in tag_frequency.items()},
            "dataset_dirs": dirs}


def training_facts(args: TrainArgs, data: TrainData, *, session_id: int, started_at: float, optimizer: str,
                   steps_per_epoch: int, epochs: int, total_steps: int, v2: bool, model_hash: tuple[str | None,
                   str | None], dataset: dict[str, Any], sdxl: bool = False) -> dict[str, Any]:
    """Everything but the per-save step/epoch/time facts.

    `sdxl`: the file is an SDXL LoRA (ss_base_model_version sdxl_base_v1-0, modelspec SDXL ids, 1024 px
    default resolution), as sdxl_train_network.py writes it.
    """
    model = Path(str(args.pretrained_model_name_or_path))
    facts: dict[str, Any] = {
        "session_id": session_id, "training_started_at": started_at, "output_name": args.output_name,
        "learning_rate": args.learning_rate, "text_encoder_lr": args.text_encoder_lr, "unet_lr": args.unet_lr,
        "num_train_images": data.num_train_images, "num_reg_images": data.num_reg_images,
        "num_batches_per_epoch": steps_per_epoch, "num_epochs": epochs,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_train_steps": total_steps,
        "lr_warmup_steps": args.lr_warmup_steps, "lr_scheduler": args.lr_scheduler,
        "network_module": "networks.lora", "network_dim": args.network_dim, "network_alpha": args.network_alpha,
        "network_dropout": args.network_dropout, "mixed_precision": args.mixed_precision,
        "full_fp16": bool(args.full_fp16), "v2": v2, "v_parameterization": bool(args.v_parameterization),
        "sdxl": sdxl,
        "clip_skip": args.clip_skip, "max_token_length": args.max_token_length,
        "cache_latents": bool(args.cache_latents or args.cache_latents_to_disk), "seed": args.seed,
        "lowram": bool(args.lowram), "noise_offset": args.noise_offset, "training_comment": args.training_comment,
        "optimizer": optimizer, "max_grad_norm": args.max_grad_norm, "prior_loss_weight": args.prior_loss_weight,
        "min_snr_gamma": args.min_snr_gamma, "sd_model_name": model.name, "sd_model_hash": model_hash[0],
        "new_sd_model_hash": model_hash[1], "loss_type": "l2",
        "resolution": data.datasets[0].resolution if data.datasets else (1024 if sdxl else 512),
        **dataset,
    }
    if args.network_args:
        facts["network_args"] = {str(a).split("=", 1)[0]: str(a).split("=", 1)[1] for a in args.network_args}
    if args.vae:
        facts["vae_name"] = os.path.basename(str(args.vae))
    return facts


def save_facts(base: dict[str, Any], *, step: int, epoch: int) -> dict[str, Any]:
    now = time.time()
    return {**base, "steps": step, "epoch": epoch, "training_finished_at": now, "timestamp": now}

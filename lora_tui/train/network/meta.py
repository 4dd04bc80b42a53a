"""The facts a LoRA file carries about its training (sd-scripts' ``ss_*`` metadata).

webui's and ComfyUI's LoRA browsers show these (tag frequencies, dataset folders, dims), and
sd-scripts' tools read them back, so they follow sd-scripts' shapes: JSON strings for the dataset
descriptions, ``str()`` of every other value.
"""

from __future__ import annotations

import hashlib
import os
import time
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


def _subset_facts(sub: Any, sub_steps: Any, dreambooth: bool) -> dict[str, Any]:
    """One entry of ss_datasets[i].subsets, the keys and values sd-scripts' train_network.py writes."""
    facts: dict[str, Any] = {
        "img_count": sub_steps.images, "num_repeats": int(sub.get("num_repeats")),
        "color_aug": bool(sub.get("color_aug")), "flip_aug": bool(sub.get("flip_aug")),
        "random_crop": bool(sub.get("random_crop")), "shuffle_caption": bool(sub.get("shuffle_caption")),
        "keep_tokens": int(sub.get("keep_tokens")), "keep_tokens_separator": sub.get("keep_tokens_separator"),
        "secondary_separator": sub.get("secondary_separator"), "enable_wildcard": bool(sub.get("enable_wildcard")),
        "caption_prefix": sub.get("caption_prefix"), "caption_suffix": sub.get("caption_suffix"),
        "resize_interpolation": sub.get("resize_interpolation"),
    }
    if sub.image_dir is not None:
        facts["image_dir"] = sub.image_dir.name
    if dreambooth:
        facts["class_tokens"] = sub.get("class_tokens")
        facts["is_reg"] = sub.is_reg
    else:
        meta_file = sub.path("metadata_file")
        facts["metadata_file"] = meta_file.name if meta_file else None
    return facts


def _bucket_facts(ds: Any, config: Any) -> tuple[bool, int | None, int | None, dict[str, Any] | None]:
    """(enable_bucket, min_bucket_reso, max_bucket_reso, bucket_info) as sd-scripts' dataset holds them:
    the setting itself (dataset → general → --enable_bucket), not whether the images fell in several
    buckets; the bounds rounded to bucket_reso_steps, and all None without bucketing."""
    from lora_tui.core.buckets import rounded_bucket_bounds

    if not bool(config.get("enable_bucket")):
        return False, None, None, None
    lo, hi = rounded_bucket_bounds(int(config.get("min_bucket_reso")), int(config.get("max_bucket_reso")),
                                   int(config.get("bucket_reso_steps")))
    buckets = {i: {"resolution": list(b), "count": len(items)}
               for i, (b, items) in enumerate(sorted(ds.buckets.items()))}
    return True, lo, hi, {"buckets": buckets, "mean_img_ar_error": ds.steps.mean_ar_error}


def dataset_facts(data: TrainData) -> dict[str, Any]:
    """``ss_datasets``, ``ss_tag_frequency`` and ``ss_dataset_dirs`` of a dataset-config run, key for key
    what sd-scripts' train_network.py writes (its `use_user_config` branch; the tests compare them)."""
    datasets: list[dict[str, Any]] = []
    tag_frequency: dict[str, dict[str, int]] = {}
    dirs: dict[str, dict[str, int]] = {}
    for ds in data.datasets:
        config = ds.config
        dreambooth = config.style != "finetune"
        used = [(sub, st) for sub, st in zip(config.subsets, ds.steps.subsets) if st.skipped is None]
        enable, lo, hi, bucket_info = _bucket_facts(ds, config)
        subsets = []
        for sub, sub_steps in used:
            subsets.append(_subset_facts(sub, sub_steps, dreambooth))
            name = subsets[-1].get("image_dir") if dreambooth else subsets[-1].get("metadata_file")
            if name is None or (dreambooth and sub.is_reg):
                continue  # sd-scripts lists no reg folder in ss_dataset_dirs
            unique, i = name, 2
            while unique in dirs:
                unique, i = f"{name} ({i})", i + 1
            dirs[unique] = {"n_repeats": int(sub.get("num_repeats")), "img_count": sub_steps.images}
        datasets.append({
            "is_dreambooth": dreambooth, "batch_size_per_device": ds.batch_size,
            "num_train_images": sum(st.samples for _, st in used if not (dreambooth and st.is_reg)),
            "num_reg_images": sum(st.samples for _, st in used if dreambooth and st.is_reg),
            "resolution": list(ds.resolution), "enable_bucket": enable, "min_bucket_reso": lo,
            "max_bucket_reso": hi, "tag_frequency": ds.tag_frequency, "bucket_info": bucket_info,
            "resize_interpolation": config.get("resize_interpolation"), "subsets": subsets,
        })
        for folder, freq in ds.tag_frequency.items():  # a folder used by several datasets counts once
            tag_frequency.setdefault(folder, freq)
    return {"datasets": datasets, "tag_frequency": tag_frequency, "dataset_dirs": dirs}


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

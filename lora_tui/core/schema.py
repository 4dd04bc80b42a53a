"""sd-scripts' dataset-config schema as data (library/config_util.py, ConfigSanitizer).

Which key is legal at ``[general]``, ``[[datasets]]`` and ``[[datasets.subsets]]`` depends on the
dataset style (DreamBooth, fine-tuning, ControlNet/masked-loss). The tables below mirror
config_util's schema groups one for one so that our validator accepts exactly what theirs does, and
the effective defaults are the argparse defaults that sd-scripts falls back to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Type specs: "int", "float" (float only: 1 is rejected), "number" (int or float), "bool", "str",
# "reso" (int or [int, int]), "float2" ([float, float]), "table".
DATASET_ASCENDABLE: dict[str, str] = {
    "batch_size": "int",
    "resolution": "reso",
    "enable_bucket": "bool",
    "min_bucket_reso": "int",
    "max_bucket_reso": "int",
    "bucket_reso_steps": "int",
    "bucket_no_upscale": "bool",
    "network_multiplier": "float",
    "validation_split": "float",
    "validation_seed": "int",
    "resize_interpolation": "str",
}
SUBSET_ASCENDABLE: dict[str, str] = {
    "color_aug": "bool",
    "face_crop_aug_range": "float2",
    "flip_aug": "bool",
    "num_repeats": "int",
    "random_crop": "bool",
    "shuffle_caption": "bool",
    "keep_tokens": "int",
    "keep_tokens_separator": "str",
    "secondary_separator": "str",
    "caption_separator": "str",
    "enable_wildcard": "bool",
    "token_warmup_min": "int",
    "token_warmup_step": "number",
    "caption_prefix": "str",
    "caption_suffix": "str",
    "custom_attributes": "table",
    "resize_interpolation": "str",
}
DROPOUT_ASCENDABLE: dict[str, str] = {
    "caption_dropout_every_n_epochs": "int",
    "caption_dropout_rate": "number",
    "caption_tag_dropout_rate": "number",
}
DB_ASCENDABLE: dict[str, str] = {"caption_extension": "str", "class_tokens": "str", "cache_info": "bool"}
DB_DISTINCT: dict[str, str] = {"image_dir": "str", "is_reg": "bool", "alpha_mask": "bool"}
FT_DISTINCT: dict[str, str] = {"metadata_file": "str", "image_dir": "str", "alpha_mask": "bool"}
CN_ASCENDABLE: dict[str, str] = {"caption_extension": "str", "cache_info": "bool"}
CN_DISTINCT: dict[str, str] = {"image_dir": "str", "conditioning_data_dir": "str"}

REQUIRED_SUBSET_KEYS = {"dreambooth": ("image_dir",), "finetune": ("metadata_file",),
                        "controlnet": ("image_dir", "conditioning_data_dir")}

RESIZE_INTERPOLATIONS = ("lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area", "box")

# Effective defaults after sd-scripts' argparse fallback (train_util add_dataset_arguments).
EFFECTIVE_DEFAULTS: dict[str, Any] = {
    "batch_size": 1,
    "resolution": None,
    "enable_bucket": False,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": False,
    "network_multiplier": 1.0,
    "validation_split": 0.0,
    "validation_seed": None,
    "num_repeats": 1,
    "shuffle_caption": False,
    "caption_separator": ",",
    "keep_tokens": 0,
    "keep_tokens_separator": "",
    "secondary_separator": None,
    "enable_wildcard": False,
    "caption_prefix": None,
    "caption_suffix": None,
    "color_aug": False,
    "flip_aug": False,
    "random_crop": False,
    "face_crop_aug_range": None,
    "token_warmup_min": 1,
    "token_warmup_step": 0,
    "caption_dropout_rate": 0.0,
    "caption_dropout_every_n_epochs": 0,
    "caption_tag_dropout_rate": 0.0,
    "caption_extension": ".caption",
    "class_tokens": None,
    "cache_info": False,
    "is_reg": False,
    "alpha_mask": False,
}

# argparse names that feed dataset keys under another name (config_util l.261-264).
ARGPARSE_ALIASES = {"batch_size": "train_batch_size", "num_repeats": "dataset_repeats"}

# Keys users try to put in the dataset TOML that only exist as command-line flags.
ARGPARSE_ONLY = ("prior_loss_weight", "debug_dataset", "max_token_length")


# Value bounds (inclusive) beyond the type, for dataset-config keys and lora-tui's [project]/[launch]:
# values sd-scripts would divide by, or reject later. train_network.py options have theirs in
# core.train_settings (one row per option, with its default and help).
MAX_REPEATS = 10_000  # past this the epoch is a typo (1e18 repeats hung the steps math)
RANGES: dict[str, tuple[float | None, float | None]] = {
    "journal_max_mb": (1, None),  # lora-tui's own [project] keys
    "journal_max_days": (1, None),
    "batch_size": (1, None),
    "resolution": (64, None),
    "min_bucket_reso": (1, None),
    "max_bucket_reso": (1, None),
    "bucket_reso_steps": (1, None),
    "validation_split": (0.0, 1.0),
    "num_repeats": (None, MAX_REPEATS),  # below 1 is legal: sd-scripts skips the subset (lint warns)
    "keep_tokens": (0, None),
    "caption_dropout_rate": (0.0, 1.0),
    "caption_tag_dropout_rate": (0.0, 1.0),
    "caption_dropout_every_n_epochs": (0, None),
    "token_warmup_min": (0, None),
    "token_warmup_step": (0, None),
    # [launch]
    "num_processes": (1, None),
    "num_machines": (1, None),
    "num_cpu_threads_per_process": (1, None),
}


def out_of_range(value: Any, lo: float | None, hi: float | None) -> str | None:
    """Why a number (or each number of a list) is outside [lo, hi]; two-sided ranges are named."""
    if isinstance(value, bool):
        return None
    both = f" (allowed: {lo:,} to {hi:,})" if lo is not None and hi is not None else ""
    for v in value if isinstance(value, list) else [value]:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and v < lo:
            return f"must be at least {lo}, got {v}{both}"
        if hi is not None and v > hi:
            return f"must be at most {hi:,}, got {v:,}{both}"
    return None


def check_range(key: str, value: Any) -> str | None:
    """Why a well-typed ``value`` is still out of bounds for dataset/[launch] key ``key``, or None."""
    bounds = RANGES.get(key)
    return None if bounds is None else out_of_range(value, *bounds)


def _merge(*groups: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in groups:
        out.update(group)
    return out


@dataclass(frozen=True)
class LevelSchema:
    """The legal keys (and their type specs) at one level of one dataset style."""

    general: dict[str, str]
    dataset: dict[str, str]
    subset: dict[str, str]


def level_schema(style: str, *, support_controlnet: bool = False) -> LevelSchema:
    """Keys legal for a dataset of ``style`` ("dreambooth", "finetune" or "controlnet").

    ``[general]`` accepts the union over every supported style, as ConfigSanitizer builds it.
    """
    general = _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, DB_ASCENDABLE)
    if support_controlnet:
        general.update(CN_ASCENDABLE)
    base_subset = _merge(SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE)
    if style == "finetune":
        dataset = _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE)
        subset = _merge(base_subset, FT_DISTINCT)
    elif style == "controlnet":
        dataset = _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, CN_ASCENDABLE)
        subset = _merge(base_subset, CN_ASCENDABLE, CN_DISTINCT)
    else:
        dataset = _merge(DATASET_ASCENDABLE, SUBSET_ASCENDABLE, DROPOUT_ASCENDABLE, DB_ASCENDABLE)
        subset = _merge(base_subset, DB_ASCENDABLE, DB_DISTINCT)
    return LevelSchema(general=general, dataset=dataset, subset=subset)


def detect_style(subsets: list[Mapping[str, Any]]) -> str | None:
    """sd-scripts' dataset-style rule; None when DreamBooth and fine-tuning subsets are mixed."""
    if subsets and all("conditioning_data_dir" in s for s in subsets):
        return "controlnet"
    with_meta = [("metadata_file" in s) for s in subsets]
    if subsets and all(with_meta):
        return "finetune"
    if not any(with_meta):
        return "dreambooth"
    return None


def check_type(spec: str, value: Any) -> str | None:
    """Return a message if ``value`` breaks ``spec`` the way sd-scripts' validator would see it."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if spec == "int":
        return None if is_int else f"expected an integer, got {_show(value)}"
    if spec == "float":
        if isinstance(value, float):
            return None
        hint = f" (write {value}.0)" if is_int else ""
        return f"expected a float, got {_show(value)}{hint}"
    if spec == "number":
        return None if is_int or isinstance(value, float) else f"expected a number, got {_show(value)}"
    if spec == "bool":
        return None if isinstance(value, bool) else f"expected true or false, got {_show(value)}"
    if spec == "str":
        return None if isinstance(value, str) else f"expected a string, got {_show(value)}"
    if spec == "table":
        return None if isinstance(value, Mapping) else f"expected a table, got {_show(value)}"
    if spec == "reso":
        if is_int:
            return None
        if (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            return None
        return f"expected an integer or [width, height] integers, got {_show(value)}"
    if spec == "float2":
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
            return None
        return f"expected two floats like [1.0, 3.0], got {_show(value)}"
    raise ValueError(f"unknown type spec {spec!r}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    return str(value)

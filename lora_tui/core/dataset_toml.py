"""sd-scripts dataset TOML (``--dataset_config``): validate, render and read.

The validator reports every problem with its path (``datasets[0].subsets[1].num_repeats``) and
checks what sd-scripts checks before training starts: legal keys per level and style, exact types
(floats must be floats), required keys, mixed styles, bucket-step divisibility and bucket bounds.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui.core import schema
from lora_tui.core.errors import ConfigError
from lora_tui.core.tomlio import locate_key, parse_plain, read_text_file


@dataclass(frozen=True)
class Problem:
    """One schema violation, addressed the way sd-scripts' validator addresses it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _suggest(key: str, legal: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(key, list(legal), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_table(table: Mapping[str, Any], legal: Mapping[str, str], where: str, level: str,
                 problems: list[Problem], extra_ok: tuple[str, ...] = ()) -> None:
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key in extra_ok:
            continue
        if key not in legal:
            if key in schema.ARGPARSE_ONLY:
                msg = f"'{key}' is a command-line flag, not a dataset key (set it in [training])"
            elif level != "subset" and key in (*schema.DB_DISTINCT, *schema.FT_DISTINCT, "conditioning_data_dir"):
                msg = f"'{key}' is only allowed in [[datasets.subsets]]"
            elif level == "subset" and key == "subsets":
                msg = "subsets cannot nest"
            else:
                msg = f"unknown key '{key}' at {level} level{_suggest(key, legal)}"
            problems.append(Problem(path, msg))
            continue
        err = schema.check_type(legal[key], value) or schema.check_range(key, value)
        if err:
            problems.append(Problem(path, err))
        elif key == "resize_interpolation" and value not in schema.RESIZE_INTERPOLATIONS:
            problems.append(Problem(path, f"unknown interpolation {value!r}; use one of "
                                          + ", ".join(schema.RESIZE_INTERPOLATIONS)))


def validate(config: Mapping[str, Any], *, masked_loss: bool = False,
             bucket_step_multiple: int = 64, args: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every way ``config`` would be refused by sd-scripts' ``train_network.py``.

    ``bucket_step_multiple`` is 64 for SD1.x/2.x (``train_network.py``) and 32 for SDXL. ``args`` are
    command-line values that fill keys the file leaves unset (e.g. ``resolution``), as in sd-scripts.
    """
    problems: list[Problem] = []
    for key in config:
        if key not in ("general", "datasets"):
            problems.append(Problem(key, f"unknown top-level key '{key}' (only [general] and "
                                         "[[datasets]] are allowed)"))
    general = config.get("general", {})
    if not isinstance(general, Mapping):
        problems.append(Problem("general", "expected a table"))
        general = {}
    _check_table(general, schema.level_schema("dreambooth", support_controlnet=masked_loss).general,
                 "general", "general", problems)
    datasets = config.get("datasets", [])
    if not isinstance(datasets, list) or not all(isinstance(d, Mapping) for d in datasets):
        problems.append(Problem("datasets", "expected [[datasets]] tables"))
        return problems
    if not datasets:
        problems.append(Problem("datasets", "no [[datasets]] defined: nothing to train on"))
    for di, dataset in enumerate(datasets):
        problems.extend(_validate_dataset(dataset, general, di, masked_loss, bucket_step_multiple, args))
    return problems


def _validate_dataset(dataset: Mapping[str, Any], general: Mapping[str, Any], di: int,
                      masked_loss: bool, step_multiple: int, args: Mapping[str, Any] | None = None) -> list[Problem]:
    problems: list[Problem] = []
    where = f"datasets[{di}]"
    subsets = dataset.get("subsets", [])
    if not isinstance(subsets, list) or not all(isinstance(s, Mapping) for s in subsets):
        return [Problem(f"{where}.subsets", "expected [[datasets.subsets]] tables")]
    if not subsets:
        problems.append(Problem(f"{where}.subsets", "dataset has no subsets; add a [[datasets.subsets]]"))
    style = schema.detect_style(subsets)
    if style is None:
        problems.append(Problem(where, "DreamBooth subset and fine tuning subset cannot be mixed in the "
                                       "same dataset; split them into separate [[datasets]]"))
        style = "dreambooth"
    if style == "controlnet" and not masked_loss:
        problems.append(Problem(where, "conditioning_data_dir subsets need masked_loss = true in "
                                       "[training] for train_network.py"))
    levels = schema.level_schema(style, support_controlnet=masked_loss)
    _check_table(dataset, levels.dataset, where, "dataset", problems, extra_ok=("subsets",))
    for si, subset in enumerate(subsets):
        swhere = f"{where}.subsets[{si}]"
        _check_table(subset, levels.subset, swhere, "subset", problems)
        for required in schema.REQUIRED_SUBSET_KEYS[style]:
            if required not in subset:
                problems.append(Problem(f"{swhere}.{required}", "required key not provided"))
    if not any(p.path.startswith(where) for p in problems):
        problems.extend(_bucket_problems(dataset, general, where, style, step_multiple, args))
    return problems


def resolve_dataset_value(key: str, dataset: Mapping[str, Any], general: Mapping[str, Any],
                          args: Mapping[str, Any] | None = None) -> Any:
    """sd-scripts' fallback chain for a dataset-level key: dataset → general → argparse → default."""
    for source in (dataset, general):
        if source.get(key) is not None:
            return source[key]
    if args:
        arg_name = schema.ARGPARSE_ALIASES.get(key, key)
        if args.get(arg_name) is not None:
            return args[arg_name]
    return schema.EFFECTIVE_DEFAULTS.get(key)


def resolve_subset_value(key: str, subset: Mapping[str, Any], dataset: Mapping[str, Any],
                         general: Mapping[str, Any], args: Mapping[str, Any] | None = None) -> Any:
    """Subset-level fallback: subset → dataset → general → argparse → default."""
    if subset.get(key) is not None:
        return subset[key]
    return resolve_dataset_value(key, dataset, general, args)


def parse_resolution(value: Any) -> tuple[int, int] | None:
    """TOML ``512`` or ``[768, 512]`` (width, height), or the args-file string ``"768,512"``."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        nums = [int(p) for p in parts]
        return (nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _bucket_problems(dataset: Mapping[str, Any], general: Mapping[str, Any], where: str, style: str,
                     step_multiple: int, args: Mapping[str, Any] | None = None) -> list[Problem]:
    problems: list[Problem] = []

    def value(key: str) -> Any:
        return resolve_dataset_value(key, dataset, general, args)

    reso = parse_resolution(value("resolution"))
    if reso is None:
        if style != "finetune":
            problems.append(Problem(f"{where}.resolution", "resolution is required (e.g. 512 or [768, 512])"))
        return problems
    step = value("bucket_reso_steps")
    if step <= 0 or step % step_multiple:
        problems.append(Problem(f"{where}.bucket_reso_steps",
                                f"must be a positive multiple of {step_multiple} for this model, got {step}"))
        return problems
    if value("enable_bucket") and not value("bucket_no_upscale"):
        lo = value("min_bucket_reso")
        hi = value("max_bucket_reso")
        lo_r, hi_r = lo - lo % step, math.ceil(hi / step) * step
        if min(reso) < lo_r:
            problems.append(Problem(f"{where}.min_bucket_reso",
                                    f"min_bucket_reso {lo_r} is larger than the resolution's short side "
                                    f"{min(reso)}"))
        if max(reso) > hi_r:
            problems.append(Problem(f"{where}.max_bucket_reso",
                                    f"max_bucket_reso {hi_r} is smaller than the resolution's long side "
                                    f"{max(reso)}"))
    return problems


def render(general: Mapping[str, Any], datasets: list[Mapping[str, Any]], *, header: str = "") -> str:
    """Write a dataset TOML that sd-scripts reads unchanged (floats stay floats, no extra keys)."""
    doc = tomlkit.document()
    if header:
        for line in header.splitlines():
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    gen = tomlkit.table()
    for key, value in general.items():
        gen.add(key, _plain(value))
    doc.add("general", gen)
    aot = tomlkit.aot()
    for dataset in datasets:
        table = tomlkit.table()
        for key, value in dataset.items():
            if key != "subsets":
                table.add(key, _plain(value))
        subs = tomlkit.aot()
        for subset in dataset.get("subsets", []):
            st = tomlkit.table()
            for key, value in subset.items():
                st.add(key, _plain(value))
            subs.append(st)
        table.add("subsets", subs)
        aot.append(table)
    doc.add("datasets", aot)
    return tomlkit.dumps(doc)


def _plain(value: Any) -> Any:
    if hasattr(value, "unwrap"):
        value = value.unwrap()
    if isinstance(value, tuple):
        return list(value)
    return value


def load(path: Path, *, masked_loss: bool = False, args: Mapping[str, Any] | None = None,
         bucket_step_multiple: int = 64) -> dict[str, Any]:
    """Read and validate an sd-scripts dataset TOML; a :class:`ConfigError` lists every problem.

    ``args`` (command-line values) fill what the file leaves unset, as in :func:`validate`."""
    config = parse_plain(path, "dataset config")
    problems = validate(config, masked_loss=masked_loss, args=args, bucket_step_multiple=bucket_step_multiple)
    if problems:
        text = read_text_file(path, "dataset config")
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{first}{more}", path=path, line=locate_key(text, first.path))
    return config

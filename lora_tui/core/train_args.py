"""sd-scripts ``train_network.py`` / ``sdxl_train_network.py`` arguments: validate ``[training]``,
render ``--config_file`` TOML and the launch command.

The list of options is data (``data/train_network_args.json`` plus the SDXL script's additions in
``data/sdxl_train_network_args.json``), read off sd-scripts' own parsers, so
every key we write exists there. sd-scripts keeps unknown keys of a config file silently, which
turns typos into settings that never apply; we refuse them instead.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui.core import train_settings

# Options lora-tui sets itself; a user value would silently fight ours.
MANAGED = {
    "dataset_config": "lora-tui writes configs/<name>.toml and points dataset_config at it",
    "config_file": "lora-tui passes its generated args file as --config_file",
    "output_config": "it makes sd-scripts write a config and exit instead of training",
    "train_data_dir": "lora-tui drives sd-scripts with a dataset config; add subsets in [[datasets]]",
    "reg_data_dir": "add a subset with is_reg = true in [[datasets]] instead",
    "in_json": "set metadata_file on a subset in [[datasets]] instead",
}


@dataclass(frozen=True)
class ArgProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


SD_SCRIPT, SDXL_SCRIPT = "train_network.py", "sdxl_train_network.py"


def _read_args(name: str) -> dict[str, dict[str, Any]]:
    data = json.loads(resources.files("lora_tui.core").joinpath(f"data/{name}").read_text("utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


@cache
def sdxl_only_args() -> dict[str, dict[str, Any]]:
    """The options sdxl_train_network.py's parser adds to train_network.py's (read off its source)."""
    return _read_args("sdxl_train_network_args.json")


@cache
def known_args() -> dict[str, dict[str, Any]]:
    """Every option of sd-scripts' train_network.py and sdxl_train_network.py parsers: name → kind,
    default, choices. An SDXL-only option on an SD1/SD2 model is a lint error (core.family_checks),
    since train_network.py would keep it without a word."""
    return {**_read_args("train_network_args.json"), **sdxl_only_args()}


def training_script(family: str | None) -> str:
    """The sd-scripts script that trains a LoRA for a base model of this family."""
    return SDXL_SCRIPT if family == "sdxl" else SD_SCRIPT


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _elem_ok(kind: str, v: Any) -> bool:
    if kind == "int":
        return _is_int(v)
    if kind == "float":
        return _is_int(v) or isinstance(v, float)
    return isinstance(v, str)


def check_arg(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid setting for option ``name``, or None."""
    spec = known_args()[name]
    kind = spec["kind"]
    if kind == "flag":
        return None if isinstance(value, bool) else "expected true or false"
    if kind == "int":
        return None if _is_int(value) else f"expected an integer, got {value!r}"
    if kind == "float":
        if _is_int(value) or isinstance(value, float):
            return None
        if spec.get("argparse_type") == "int_or_float" and isinstance(value, str) and value.endswith("%"):
            return None
        return f"expected a number, got {value!r}"
    if kind == "str":
        if name == "resolution" and not isinstance(value, str):
            return 'set resolution on [[datasets]] (here it must be a string like "512,512")'
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    if kind == "choice":
        choices = spec.get("choices") or []
        return None if value in choices else "expected one of " + ", ".join(map(str, choices))
    if kind == "list":
        elem = spec.get("nargs_type", "str")
        items = value if isinstance(value, list) else [value]
        if all(_elem_ok(elem, v) for v in items):
            return None
        return f"expected a list of {elem} values"
    return None


def validate(table: Mapping[str, Any]) -> list[ArgProblem]:
    """Unknown or mistyped options in ``[model]`` / ``[training]``."""
    args = known_args()
    problems = []
    for key, value in table.items():
        if key in MANAGED:
            problems.append(ArgProblem(key, f"'{key}' is managed by lora-tui: {MANAGED[key]}"))
            continue
        if key not in args:
            close = difflib.get_close_matches(key, list(args), n=1, cutoff=0.75)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(ArgProblem(key, f"unknown sd-scripts option '{key}'{hint}"))
            continue
        err = check_arg(key, value) or train_settings.range_problem(key, value)
        if err:
            problems.append(ArgProblem(key, err))
    return problems


def normalise(name: str, value: Any) -> Any:
    """Shape a value the way sd-scripts' config-file loader needs it (lists stay lists)."""
    spec = known_args().get(name, {})
    if spec.get("kind") == "list" and not isinstance(value, list):
        return [value]
    if spec.get("kind") == "float" and _is_int(value) and spec.get("argparse_type") != "int_or_float":
        return float(value)  # int_or_float options (lr_warmup_steps) mean steps as ints, ratios as floats
    return value


def render_args_toml(sections: Mapping[str, Mapping[str, Any]], *, header: str = "") -> str:
    """Render a ``--config_file`` TOML; sd-scripts flattens the tables, so names are for humans."""
    doc = tomlkit.document()
    for line in header.splitlines():
        doc.add(tomlkit.comment(line))
    if header:
        doc.add(tomlkit.nl())
    seen: set[str] = set()
    for section, values in sections.items():
        table = tomlkit.table()
        for key, value in values.items():
            if key in seen or value is None:
                continue
            seen.add(key)
            table.add(key, normalise(key, value))
        if len(table):
            doc.add(section, table)
    return tomlkit.dumps(doc)


def accelerate_argv(launch: Mapping[str, Any], program: list[str], *,
                    launcher: list[str] | None = None) -> list[str]:
    """``accelerate launch [options from [launch]] PROGRAM…``: the one place [launch] becomes flags,
    for sd-scripts' train_network.py and the built-in trainer alike."""
    argv = list(launcher or ["accelerate", "launch"])
    argv += ["--num_cpu_threads_per_process", str(launch.get("num_cpu_threads_per_process", 1))]
    procs = int(launch.get("num_processes", 1))
    if procs > 1:
        argv += ["--multi_gpu", "--num_processes", str(procs)]
    for key in ("num_machines", "machine_rank", "main_process_ip", "main_process_port", "gpu_ids",
                "mixed_precision"):
        value = launch.get(key)
        if value is None or value == "" or (key == "num_machines" and int(value) == 1):
            continue
        argv += [f"--{key}", str(value)]
    return argv + program


def launch_command(script: Path | str, args_file: Path, launch: Mapping[str, Any],
                   launcher: list[str] | None = None) -> list[str]:
    """``accelerate launch ... train_network.py --config_file ...`` as argv."""
    return accelerate_argv(launch, [str(script), "--config_file", str(args_file)], launcher=launcher)


def shell_join(argv: list[str]) -> str:
    return shlex.join(argv)

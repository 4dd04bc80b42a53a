"""Flags of the built-in trainer, under sd-scripts' names and with sd-scripts' config-file rules.

`--config_file` TOML tables are flattened (section names are free), explicit command-line flags win
over the file, the file over the defaults, exactly as train_network.py does. Every option sd-scripts
knows is recognised; one we do not implement is an error naming it unless it holds sd-scripts'
default, so a recipe never trains differently from what it says without the user knowing.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from lora_tui.core import builtin_models
from lora_tui.core.errors import TrainError
from lora_tui.core.train_args import check_arg, known_args
from lora_tui.core.train_settings import SETTINGS, defaults, range_problem

SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
              "adafactor")
OPTIMIZERS = ("adamw", "adamw8bit", "lion", "sgdnesterov", "adafactor", "prodigy", "dadaptation",
              "dadaptadam")

# sd-scripts options the built-in trainer implements (beyond them: an error unless left at default);
# their defaults and ranges are core.train_settings' rows. SDXL-only rows are implemented too; on an
# SD1/SD2 model they are refused when the model is known (core.family_checks, as `lora-tui check`).
SUPPORTED = frozenset(SETTINGS)
NETWORK_ARGS = ("conv_dim", "conv_alpha", "dropout")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one TrainError line instead of a 150-line usage dump."""

    def error(self, message: str) -> NoReturn:
        raise TrainError(message, hint="see python -m lora_tui.train --help")


@dataclass(frozen=True)
class TrainArgs:
    """The resolved flags: attribute access like sd-scripts' namespace, plus where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    notes: tuple[str, ...] = ()  # what resolving decided that the run should say (warn events)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> TrainArgs:
        values = dict(self.values)
        values.update(changes)
        sources = dict(self.sources)
        sources.update(dict.fromkeys(changes, "override"))
        return TrainArgs(values, sources, self.notes)


def _flag_type(spec: Mapping[str, Any]) -> Any:
    kind = spec.get("kind")
    if kind == "int":
        return int
    if kind == "float":
        if spec.get("argparse_type") == "int_or_float":
            return lambda s: float(s) if any(c in s for c in ".eE") else int(s)
        return float
    return str


def build_parser() -> argparse.ArgumentParser:
    """Every train_network.py option, so a recipe's flags parse before we judge them."""
    parser = _Parser(prog="lora_tui.train", description="lora-tui's built-in LoRA trainer "
                                     "(sd-scripts train_network.py flags and config files)")
    for name, spec in sorted(known_args().items()):
        flag = "--" + name
        if spec.get("kind") == "flag":
            parser.add_argument(flag, action="store_true", default=None)
        elif spec.get("kind") == "list":
            parser.add_argument(flag, nargs="*", default=None)
        elif spec.get("kind") == "choice":
            choices = [c for c in spec.get("choices", []) if c is not None]
            parser.add_argument(flag, choices=choices, default=None)
        else:
            parser.add_argument(flag, type=_flag_type(spec), default=None)
    return parser


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    """sd-scripts' `--config_file`: `.toml` appended when missing, every table flattened."""
    if path.suffix != ".toml" and not path.exists():
        path = path.with_name(path.name + ".toml")
    try:
        return _flatten(tomllib.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        raise TrainError("config file not found", path=path, hint="check --config_file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"cannot read config file: {exc}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise TrainError(f"not valid TOML: {exc}", path=path) from None


def _default(name: str) -> Any:
    """sd-scripts' argparse default (for options we do not implement: "left at default" is this)."""
    spec = known_args().get(name, {})
    return spec.get("default")


def _is_default(name: str, value: Any) -> bool:
    default = _default(name)
    if value is None or value == default:
        return True
    return spec_kind(name) == "flag" and not value and not default


def spec_kind(name: str) -> str:
    return str(known_args().get(name, {}).get("kind", ""))


def parse_args(argv: Sequence[str] | None = None) -> TrainArgs:
    """Parse the command line and the config file into checked :class:`TrainArgs`."""
    parser = build_parser()
    ns, unknown = parser.parse_known_args(argv)  # --help exits 0 here; bad values raise TrainError
    if unknown:
        raise TrainError(f"unknown option {unknown[0]!r}", hint="the built-in trainer takes sd-scripts "
                         "train_network.py options")
    cli = {k: v for k, v in vars(ns).items() if v is not None}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = cli.get("config_file")
    where = Path(config_file) if config_file else None
    if config_file:
        for key, value in read_config_file(Path(config_file)).items():
            if key not in known_args():
                raise TrainError(f"unknown option '{key}'", path=where,
                                 hint="not a train_network.py option; remove it")
            problem = check_arg(key, value) or range_problem(key, value)
            if problem:
                raise TrainError(f"{key}: {problem}", path=where)
            values[key], sources[key] = value, "config_file"
    for key, value in cli.items():
        problem = range_problem(key, value)
        if problem:
            raise TrainError(f"--{key}: {problem}")
        values[key], sources[key] = value, "command line"
    return check(resolve(values, sources), where)


def resolve(values: Mapping[str, Any], sources: Mapping[str, str]) -> TrainArgs:
    """Fill defaults (the effective ones of core.train_settings for what we implement, sd-scripts'
    argparse defaults for the rest) and normalise shapes (lists, the text-encoder lr)."""
    out = {name: spec.get("default") for name, spec in known_args().items()}
    out.update(defaults())
    out.update({k: v for k, v in values.items() if v is not None})
    for name in ("network_args", "optimizer_args", "text_encoder_lr"):
        if out.get(name) is not None and not isinstance(out[name], list):
            out[name] = [out[name]]
    notes: list[str] = []
    if isinstance(out.get("text_encoder_lr"), list):
        given = [float(v) for v in out["text_encoder_lr"]]
        # train_network.py hands networks.lora only the first value (its networks without
        # prepare_optimizer_params_with_multiple_te_lrs); SDXL's second text encoder trains at it too
        out["text_encoder_lr"] = given[0] if given else None
        if len(given) > 1 and any(v != given[0] for v in given[1:]):
            notes.append(f"text_encoder_lr has {len(given)} values; networks.lora uses the first ({given[0]:g}) "
                         "for every text encoder, as sd-scripts does")
    if not out.get("optimizer_type"):  # sd-scripts reads "" as AdamW
        out["optimizer_type"] = SETTINGS["optimizer_type"].default
    return TrainArgs(out, dict(sources), tuple(notes))


def check(args: TrainArgs, where: Path | None = None) -> TrainArgs:
    """Refuse what we would otherwise ignore: unsupported options away from their defaults."""
    for name, value in args.values.items():
        if name in SUPPORTED or _is_default(name, value):
            continue
        raise TrainError(f"option '{name}' is not supported by the built-in trainer",
                         path=where if args.sources.get(name) == "config_file" else None,
                         hint="remove it, or train with the sd-scripts backend")
    if args.network_module not in (None, "networks.lora"):
        raise TrainError(f"network_module {args.network_module!r} is not supported by the built-in trainer",
                         hint="use networks.lora, or the sd-scripts backend")
    if args.optimizer_type.lower() not in OPTIMIZERS:
        raise TrainError(f"optimizer_type {args.optimizer_type!r} is not supported by the built-in trainer",
                         hint="one of AdamW, AdamW8bit, Lion, SGDNesterov, Adafactor, Prodigy, DAdaptation")
    if args.lr_scheduler not in SCHEDULERS:
        raise TrainError(f"lr_scheduler {args.lr_scheduler!r} is not supported by the built-in trainer",
                         hint="one of " + ", ".join(SCHEDULERS))
    for item in args.network_args or []:
        key = str(item).split("=", 1)[0].strip()
        if "=" not in str(item) or key not in NETWORK_ARGS:
            raise TrainError(f"network_args entry {item!r} is not supported by the built-in trainer",
                             hint="supported: " + ", ".join(f"{k}=…" for k in NETWORK_ARGS))
    if args.full_fp16 and args.mixed_precision != "fp16":
        raise TrainError("full_fp16 needs mixed_precision = fp16")
    if args.full_bf16 and args.mixed_precision != "bf16":
        raise TrainError("full_bf16 needs mixed_precision = bf16")
    if args.network_train_unet_only and args.network_train_text_encoder_only:
        raise TrainError("network_train_unet_only and network_train_text_encoder_only exclude each other")
    if args.persistent_data_loader_workers and not args.max_data_loader_n_workers:
        raise TrainError("persistent_data_loader_workers needs max_data_loader_n_workers > 0")
    if args.log_with not in (None, "tensorboard"):
        raise TrainError(f"log_with {args.log_with!r} is not supported by the built-in trainer",
                         hint="use tensorboard (with logging_dir)")
    if args.log_with == "tensorboard" and not args.logging_dir:
        raise TrainError("log_with = tensorboard needs logging_dir")
    if not args.dataset_config:
        raise TrainError("no dataset_config", hint="pass --dataset_config configs/<name>.toml "
                         "(lora-tui config writes it)")
    if not args.pretrained_model_name_or_path:
        raise TrainError("no pretrained_model_name_or_path", hint="set it in [model] of lora-tui.toml, or pass "
                         "--model to lora-tui train (lora-tui make-tiny-model makes a test model)")
    if builtin_models.is_reference(args.pretrained_model_name_or_path):  # built when training starts
        from_file = args.sources.get("pretrained_model_name_or_path") == "config_file"
        builtin_models.lookup(str(args.pretrained_model_name_or_path), path=where if from_file else None)
    return args


def network_kwargs(args: TrainArgs) -> dict[str, Any]:
    """`--network_args` as values: conv_dim/conv_alpha numbers, dropout a float."""
    out: dict[str, Any] = {}
    for item in args.network_args or []:
        key, raw = str(item).split("=", 1)
        key, raw = key.strip(), raw.strip()
        try:
            out[key] = int(raw) if key == "conv_dim" else float(raw)
        except ValueError:
            raise TrainError(f"network_args {key}={raw!r} is not a number") from None
    return out


def optimizer_kwargs(args: TrainArgs) -> dict[str, Any]:
    """`--optimizer_args k=v`: values are Python literals, as sd-scripts evaluates them."""
    out: dict[str, Any] = {}
    for item in args.optimizer_args or []:
        if "=" not in str(item):
            raise TrainError(f"optimizer_args entry {item!r} must be key=value")
        key, raw = str(item).split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise TrainError(f"optimizer_args {key.strip()}={raw.strip()!r} is not a Python literal",
                             hint="e.g. weight_decay=0.01 or betas=0.9,0.999") from None
    return out

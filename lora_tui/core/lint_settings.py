"""Lint of the project's settings: base model, training arguments and backend, before any image is read.

Kept apart from core.lint, whose bulk is the per-subset file checks: these findings come from
lora-tui.toml alone (and the base model's header for the family checks), so they all point at the
project file. :func:`check_settings` is called once per lint, first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lora_tui.core import builtin_models, family_checks, model_family
from lora_tui.core.dataset_toml import parse_resolution
from lora_tui.core.findings import ERROR, INFO, WARNING
from lora_tui.core.model_path import model_problem
from lora_tui.core.project import Project
from lora_tui.core.train_args import SDXL_SCRIPT
from lora_tui.core.train_settings import SETTINGS, effective

ADAPTIVE_OPTIMIZERS = ("dadapt", "prodigy")


def check_settings(project: Project, add: Callable[..., None]) -> None:
    file = str(project.file)
    args = project.args
    model = project.model_path
    if project.model_reference:
        known = builtin_models.find(project.model_reference)
        if known is None:
            add(ERROR, "model-builtin-unknown", f"unknown built-in model '{project.model_reference}'", file,
                f"use one of {builtin_models.known_names()}, or a .safetensors/.ckpt file or a Diffusers folder")
        else:
            add(INFO, "model-builtin", f"{known.reference} is a {builtin_models.TEST_MODEL_NOTE}", file,
                builtin_models.TEST_MODEL_FIX)
            if project.backend == "sd-scripts":
                add(WARNING, "model-builtin-sd-scripts", f"sd-scripts cannot load {known.reference}: its U-Net "
                    "has SD1.5's fixed widths (library/original_unet.py)", file,
                    'train the tiny model with backend = "builtin", or set [model] to your checkpoint')
    elif project.model_hub_id:
        add(WARNING, "model-hub", f"base model '{project.model_hub_id}' is a Hugging Face hub id: training "
            "finds it only in the local Hugging Face cache (or downloads it with --allow-download)", file,
            "download it once and set pretrained_model_name_or_path to the local file or folder")
    elif model is None:
        add(ERROR, "model-unset", "no base model set", file,
            "set [model] pretrained_model_name_or_path to a .safetensors/.ckpt file or a Diffusers folder")
    elif not model.exists():
        add(ERROR, "model-missing", f"base model not found: {model}", file,
            "fix [model] pretrained_model_name_or_path or put the model there")
    elif problem := model_problem(model):
        add(ERROR, "model-invalid", f"base model {model}: {problem}", file,
            "point [model] pretrained_model_name_or_path at a .safetensors/.ckpt file or a Diffusers folder")
    else:
        check_family(project, model, add)
    if not args.get("network_module"):
        add(ERROR, "network-module", "network_module is not set (sd-scripts requires it)", file,
            'set [training] network_module = "networks.lora"')
    if args.get("learning_rate") is None and args.get("unet_lr") is None:
        add(WARNING, "lr-default", f"no learning_rate: sd-scripts' default {SETTINGS['learning_rate'].default:g} "
            "is far too low for a LoRA",
            file, "set [training] learning_rate = 1e-4")
    scheduler = effective(args, "lr_scheduler")
    warmup = effective(args, "lr_warmup_steps")
    if scheduler in ("constant", "adafactor") and warmup not in (0, 0.0, None):
        add(ERROR, "warmup-constant", f"lr_scheduler '{scheduler}' does not take warmup "
            f"(sd-scripts raises an error)", file,
            "set lr_warmup_steps = 0 or use lr_scheduler = \"constant_with_warmup\"")
    optimizer = str(effective(args, "optimizer_type")).lower()
    lr = args.get("learning_rate")
    if optimizer.startswith(ADAPTIVE_OPTIMIZERS) and lr is not None and lr <= 0.1:
        add(WARNING, "adaptive-lr", f"{args['optimizer_type']} expects learning_rate ≈ 1.0, got {lr}", file,
            "set learning_rate = 1.0")
    if not args.get("max_train_epochs") and not args.get("max_train_steps"):
        add(WARNING, "steps-default", "neither max_train_epochs nor max_train_steps is set: "
            f"sd-scripts trains {SETTINGS['max_train_steps'].default:,} steps", file, "set [training] max_train_epochs")
    if args.get("cache_latents") or args.get("cache_latents_to_disk"):
        for sub in project.subsets:
            for key in ("color_aug", "random_crop"):
                if sub.get(key):
                    add(ERROR, "cache-latents-aug", f"{sub.label}: {key} cannot be used while caching "
                        "latents (sd-scripts asserts)", file,
                        f"set {key} = false or turn off cache_latents in [training]")
    if project.backend == "sd-scripts":
        script = project.sd_scripts_dir / "train_network.py" if project.sd_scripts_dir else None
        if script is None or not script.is_file():
            add(ERROR, "sd-scripts-missing", "backend is sd-scripts but train_network.py was not found "
                f"in {project.sd_scripts_dir or '(unset)'}", file,
                "set [project] sd_scripts_dir to your kohya-ss/sd-scripts checkout")


def check_family(project: Project, model: Path, add: Callable[..., None]) -> None:
    """Settings against the base model's family, read from its header (core.family_checks)."""
    file = str(project.file)
    family = model_family.family_or_none(model)  # an unreadable header is doctor's finding, not a setting's
    subsets = [{"label": sub.label, **{k: sub.get(k) for k in family_checks.TE_CACHE_CONFLICTS}}
               for sub in project.subsets]
    args = dict(project.args)
    if args.get("mixed_precision") is None:  # accelerate's [launch] setting applies when [training] has none
        args["mixed_precision"] = project.launch.get("mixed_precision")
    found = family_checks.family_problems(family, args, backend=project.backend, subsets=subsets)
    resolutions = [(f"datasets[{ds.index}]", reso) for ds in project.datasets
                   if (reso := parse_resolution(ds.get("resolution"))) is not None]
    found += family_checks.resolution_problems(family, resolutions)
    for problem in found:
        add(problem.severity, problem.code, problem.message, file, problem.fix)
    checkout = project.sd_scripts_dir
    if family == model_family.SDXL and project.backend == "sd-scripts" and checkout is not None \
            and (checkout / "train_network.py").is_file() and not (checkout / SDXL_SCRIPT).is_file():
        add(ERROR, "sd-scripts-missing", f"the base model is SDXL but {checkout} has no {SDXL_SCRIPT}", file,
            "update the kohya-ss/sd-scripts checkout (git pull)")

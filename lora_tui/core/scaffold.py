"""Creating projects: ``lora-tui new`` and the importers share one project-file writer.

Nothing is copied, moved or linked: subsets point at the user's folders where they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui.core import dataset_toml, images
from lora_tui.core.errors import ConfigError, ImageError, ProjectError
from lora_tui.core.fsio import atomic_write_text
from lora_tui.core.project import PROJECT_FILE, STATE_DIR
from lora_tui.core.tomlio import parse_plain

LEGACY_NAME = re.compile(r"^(-?\d+)_(.*)$|^(-?\d+)$")
TARGET_SAMPLES = 300  # images × repeats per epoch a new project aims for

DEFAULT_GENERAL: dict[str, Any] = {
    "caption_extension": ".txt",
    "shuffle_caption": False,
    "keep_tokens": 1,
    "enable_bucket": True,
    "min_bucket_reso": 256,
    "max_bucket_reso": 1024,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": False,
}
DEFAULT_DATASET: dict[str, Any] = {"resolution": 512, "batch_size": 2}
DEFAULT_TRAINING: dict[str, Any] = {
    "network_module": "networks.lora",
    "network_dim": 16,
    "network_alpha": 8.0,
    "learning_rate": 1e-4,
    "unet_lr": 1e-4,
    "text_encoder_lr": 5e-5,
    "optimizer_type": "AdamW",
    "lr_scheduler": "cosine",
    "lr_warmup_steps": 0,
    "max_train_epochs": 10,
    "mixed_precision": "bf16",
    "save_precision": "fp16",
    "save_model_as": "safetensors",
    "save_every_n_epochs": 2,
    "sdpa": True,
    "cache_latents": True,
    "gradient_checkpointing": False,
    "max_data_loader_n_workers": 2,
    "seed": 42,
}
COMMENTS = {
    "caption_extension": "sidecar captions: <image stem>.txt (sd-scripts' own default is .caption)",
    "keep_tokens": "first tag (the trigger word) stays first when shuffle_caption is on",
    "class_tokens": "caption for images that have no caption file",
    "trigger_word": "lora-tui: lint checks every caption contains it",
    "num_repeats": "images × repeats = samples per epoch",
    "resolution": "512 for SD 1.x, 768 for SD 2.x 768-v, 1024 for SDXL; or [width, height]",
    "no_half_vae": "SDXL's VAE overflows in fp16",
    "mixed_precision": "bf16 on Ampere or newer; fp16 on older GPUs",
}


@dataclass
class NewProject:
    root: Path
    name: str
    general: dict[str, Any]
    datasets: list[dict[str, Any]]
    training: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TRAINING))
    model: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)  # project-relative folders to create
    backend: str = "builtin"


# What a new project changes for a base model of each family (told from its header): SDXL trains at
# 1024-class sizes with buckets up to 2048 on the long side (sd-scripts' max_bucket_reso default of
# 1024 would allow only buckets within 1024×1024), keeps its VAE in fp32, and needs the sd-scripts
# backend until the built-in trainer supports it; SD2 needs v2, SD2-v also v_parameterization at 768.
FAMILY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "sdxl": {"dataset": {"resolution": 1024, "batch_size": 1}, "general": {"max_bucket_reso": 2048},
             "training": {"no_half_vae": True, "gradient_checkpointing": True}, "model": {}},
    "sd_v2": {"dataset": {}, "general": {}, "training": {}, "model": {"v2": True}},
    "sd_v2_v": {"dataset": {"resolution": 768}, "general": {}, "training": {},
                "model": {"v2": True, "v_parameterization": True}},
}


def use_model(plan: NewProject, model: Path) -> NewProject:
    """Point a planned project at `model` and apply its family's defaults (FAMILY_DEFAULTS)."""
    from lora_tui.core.model_family import LABELS, FamilyError, detect_family

    model = Path(model).expanduser().absolute()
    if not model.exists():
        raise ProjectError("base model not found", path=model, hint="give a .safetensors file or a Diffusers folder")
    try:
        family = detect_family(model)
    except FamilyError as exc:
        raise ProjectError(f"cannot read the base model: {exc}", path=model,
                           hint="the file is truncated or not a checkpoint") from None
    plan.model["pretrained_model_name_or_path"] = _rel_or_abs(plan.root, model)
    changes = FAMILY_DEFAULTS.get(family or "", {})
    plan.model.update(changes.get("model", {}))
    plan.general.update(changes.get("general", {}))
    plan.training.update(changes.get("training", {}))
    for ds in plan.datasets:
        ds.update(changes.get("dataset", {}))
    if family in LABELS:
        plan.notes.append(f"base model family: {LABELS[family]}")
    return plan


def _value(value: Any) -> str:
    return tomlkit.item(value).as_string()


def _kv(key: str, value: Any, indent: str = "") -> str:
    line = f"{indent}{key} = {_value(value)}"
    if key in COMMENTS:
        line = f"{line:<40} # {COMMENTS[key]}"
    return line


def render_project(p: NewProject) -> str:
    """The project file text, with comments that explain the non-obvious keys."""
    out = [
        "# lora-tui project file: the single source of truth for this LoRA.",
        "# [general] / [[datasets]] / [[datasets.subsets]] use kohya-ss/sd-scripts dataset-config keys;",
        "# [model] and [training] use train_network.py flag names. Paths may be relative to this folder.",
        "",
        "[project]",
        _kv("name", p.name),
        f'{_kv("backend", p.backend):<40}# "builtin" (lora-tui\'s trainer) or "sd-scripts"',
        '# sd_scripts_dir = "~/sd-scripts"       # your kohya-ss/sd-scripts checkout (backend = "sd-scripts")',
        "",
        "[model]",
        _kv("pretrained_model_name_or_path", p.model.get("pretrained_model_name_or_path", "")) +
        "  # a .safetensors/.ckpt file or a Diffusers folder",
    ]
    out += [_kv(k, v) for k, v in p.model.items() if k != "pretrained_model_name_or_path"]
    out += ["# v2 = true                            # SD 2.x base models", "", "[general]"]
    out += [_kv(k, v) for k, v in p.general.items()]
    for ds in p.datasets:
        out += ["", "[[datasets]]"]
        out += [_kv(k, v) for k, v in ds.items() if k != "subsets"]
        for sub in ds.get("subsets", []):
            out += ["", "  [[datasets.subsets]]"]
            out += [_kv(k, v, "  ") for k, v in sub.items()]
    out += ["", "[training]"]
    out += [_kv(k, v) for k, v in p.training.items()]
    out += ["", "[launch]", "num_processes = 1                        # GPUs (accelerate launch --num_processes)", ""]
    for note in p.notes:
        out.insert(3, f"# note: {note}")
    return "\n".join(out)


def write_project(p: NewProject) -> Path:
    """Create the folder layout and the project file; refuses to overwrite an existing project."""
    file = p.root / PROJECT_FILE
    if p.root.exists() and not p.root.is_dir():
        raise ProjectError("not a folder", path=p.root, hint="choose a folder path for the new project")
    if file.exists():
        raise ProjectError("a project already exists here", path=file,
                           hint="open it, or choose another folder")
    try:
        p.root.mkdir(parents=True, exist_ok=True)
        for sub in ("data", "configs", STATE_DIR, *p.folders):
            (p.root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"cannot create project folder: {exc.strerror or exc}", path=p.root) from None
    atomic_write_text(file, render_project(p))
    return file


def _rel_or_abs(root: Path, path: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _caption_extension(folders: Sequence[Path]) -> str:
    """.txt unless the folders only hold .caption sidecars."""
    has = {".txt": 0, ".caption": 0}
    for folder in folders:
        try:
            for name in os.listdir(folder):
                ext = os.path.splitext(name)[1]
                if ext in has:
                    has[ext] += 1
        except OSError:
            continue
    return ".caption" if has[".caption"] and not has[".txt"] else ".txt"


def _repeats_for(count: int) -> int:
    return max(1, min(100, round(TARGET_SAMPLES / max(count, 1))))


def _has_captions(folder: Path, ext: str) -> bool:
    try:
        return any(n.endswith(ext) for n in os.listdir(folder))
    except OSError:
        return False


def trigger_from_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "subject"


def new_project(root: Path, name: str | None = None, from_images: Path | None = None) -> NewProject:
    """Plan a new project; with ``from_images`` the subsets point at those folders in place."""
    root = Path(root).expanduser().absolute()
    name = name or root.name
    trigger = trigger_from_name(name)
    general = dict(DEFAULT_GENERAL)
    subsets: list[dict[str, Any]] = []
    if from_images is None:
        subsets.append({"name": trigger, "image_dir": f"data/{trigger}", "num_repeats": 10,
                        "class_tokens": trigger, "trigger_word": trigger})
    else:
        src = Path(from_images).expanduser().absolute()
        try:
            listing = images.list_folder(src)
        except ImageError as exc:
            raise ProjectError(exc.message, path=src, hint="check the --from-images folder") from None
        folders = [src] if listing.images else [src / d for d in listing.subdirs
                                                if images.list_folder(src / d).images]
        if not folders:
            raise ProjectError("no images found (sd-scripts looks for .png .jpg .jpeg .webp .bmp directly "
                               "inside a folder or its immediate subfolders)", path=src,
                               hint="point --from-images at the folder holding the images")
        general["caption_extension"] = _caption_extension(folders)
        for folder in folders:
            count = len(images.list_folder(folder).images)
            match = LEGACY_NAME.match(folder.name) if folder != src else None
            repeats = int(match.group(1) or match.group(3)) if match else _repeats_for(count)
            sub: dict[str, Any] = {"name": folder.name, "image_dir": _rel_or_abs(root, folder),
                                   "num_repeats": max(repeats, 1)}
            if not _has_captions(folder, general["caption_extension"]):
                sub["class_tokens"] = (match.group(2) if match and match.group(2) else trigger)
            sub["trigger_word"] = trigger
            subsets.append(sub)
    folders = [f"data/{trigger}"] if from_images is None else []
    return NewProject(root, name, general, [{**DEFAULT_DATASET, "subsets": subsets}], folders=folders)


def import_dataset_toml(source: Path, root: Path, name: str | None = None) -> NewProject:
    """Turn an sd-scripts dataset TOML into a project; image folders stay where they are.

    Relative ``image_dir`` paths are resolved against the TOML's folder. A missing
    ``caption_extension`` is written as ``.caption``, which is what sd-scripts used for that file.
    """
    source = Path(source).expanduser().absolute()
    config = parse_plain(source, "dataset config")
    problems = dataset_toml.validate(config, masked_loss=True)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{problems[0]}{more}", path=source, hint="fix the file, then import again")
    root = Path(root).expanduser().absolute()
    general = dict(config.get("general", {}))
    notes = [f"imported from {source}"]
    uses_ext = any("metadata_file" not in s for d in config["datasets"] for s in d.get("subsets", []))
    defined = "caption_extension" in general or any(
        "caption_extension" in d or any("caption_extension" in s for s in d.get("subsets", []))
        for d in config["datasets"])
    if uses_ext and not defined:
        general["caption_extension"] = ".caption"
        notes.append("caption_extension was unset, i.e. sd-scripts' default '.caption'; made explicit")
    datasets = []
    for ds in config["datasets"]:
        out = {k: v for k, v in ds.items() if k != "subsets"}
        subs = []
        for sub in ds.get("subsets", []):
            sub = dict(sub)
            for key in ("image_dir", "metadata_file", "conditioning_data_dir"):
                if sub.get(key):
                    path = Path(os.path.expanduser(sub[key]))
                    sub[key] = _rel_or_abs(root, path if path.is_absolute() else source.parent / path)
            subs.append(sub)
        out["subsets"] = subs
        datasets.append(out)
    return NewProject(root, name or root.name, general, datasets, notes=notes)


def import_legacy(train_dir: Path, root: Path, reg_dir: Path | None = None, name: str | None = None) -> NewProject:
    """Turn ``10_sks dog``-style folder trees into subsets, with sd-scripts' parsing rules:
    ``<repeats>_<class tokens>``; other folders are skipped (and reported)."""
    root = Path(root).expanduser().absolute()
    notes: list[str] = []
    subsets: list[dict[str, Any]] = []
    folders: list[Path] = []
    for parent, is_reg in ((train_dir, False), (reg_dir, True)):
        if parent is None:
            continue
        parent = Path(parent).expanduser().absolute()
        listing = images.list_folder(parent)
        for sub in listing.subdirs:
            match = LEGACY_NAME.match(sub)
            if not match:
                notes.append(f"skipped {parent / sub}: name does not start with '<repeats>_'")
                continue
            repeats = int(match.group(1) or match.group(3))
            if repeats < 1:
                notes.append(f"skipped {parent / sub}: repeats {repeats} < 1")
                continue
            entry: dict[str, Any] = {"name": sub, "image_dir": _rel_or_abs(root, parent / sub),
                                     "num_repeats": repeats, "class_tokens": match.group(2) or ""}
            if is_reg:
                entry["is_reg"] = True
            subsets.append(entry)
            folders.append(parent / sub)
        if listing.images:
            notes.append(f"{len(listing.images)} images directly in {parent} are ignored, as sd-scripts does")
    if not subsets:
        raise ProjectError("no '<repeats>_<name>' folders found (e.g. '10_sks dog')", path=train_dir,
                           hint="pass the parent folder of the '<repeats>_<name>' folders")
    general = dict(DEFAULT_GENERAL)
    general["caption_extension"] = _caption_extension(folders)
    return NewProject(root, name or root.name, general, [{**DEFAULT_DATASET, "subsets": subsets}],
                      notes=notes)


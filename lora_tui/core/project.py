"""The user's project: ``lora-tui.toml`` and the folder around it.

``lora-tui.toml`` is the single source of truth. Its ``[general]`` / ``[[datasets]]`` /
``[[datasets.subsets]]`` tables use sd-scripts' dataset-config semantics key for key (paths may be
relative to the project folder), ``[model]`` and ``[training]`` use ``train_network.py``'s flag
names, ``[project]`` and ``[launch]`` hold what is ours. The file is read and written with tomlkit so
the user's comments and layout survive every save.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from lora_tui.core import builtin_models, dataset_toml, schema, train_args
from lora_tui.core.errors import ConfigError, ProjectError
from lora_tui.core.fsio import atomic_write_text
from lora_tui.core.tomlio import locate_key, parse_document

PROJECT_FILE = "lora-tui.toml"
STATE_DIR = ".lora-tui"
BACKENDS = ("builtin", "sd-scripts")
# Keys of ours allowed inside [[datasets.subsets]]; stripped when rendering sd-scripts' TOML.
PROJECT_SUBSET_KEYS = {"name": "str", "trigger_word": "str"}
PROJECT_KEYS = {"name": "str", "backend": "str", "sd_scripts_dir": "str", "description": "str",
                "journal_max_mb": "number", "journal_max_days": "number"}  # caption history caps
LAUNCH_KEYS = {"num_processes": "int", "num_machines": "int", "num_cpu_threads_per_process": "int",
               "gpu_ids": "str", "main_process_port": "int", "mixed_precision": "str", "machine_rank": "int",
               "main_process_ip": "str"}
PATH_KEYS = ("image_dir", "metadata_file", "conditioning_data_dir")
DEFAULT_CAPTION_EXTENSION = ".txt"


@dataclass
class Subset:
    """One ``[[datasets.subsets]]`` entry with its settings resolved through sd-scripts' chain."""

    dataset_index: int
    index: int
    values: dict[str, Any]
    dataset_values: dict[str, Any]
    general: dict[str, Any]
    training: dict[str, Any]
    root: Path

    def get(self, key: str) -> Any:
        """The effective value of a subset key, as sd-scripts would resolve it for this project."""
        if key == "caption_extension":
            value = next((src[key] for src in (self.values, self.dataset_values, self.general)
                          if src.get(key) is not None), DEFAULT_CAPTION_EXTENSION)
            # sd-scripts adds a missing leading dot, but keeps an empty extension empty
            return value if not value or value.startswith(".") else "." + value
        return dataset_toml.resolve_subset_value(key, self.values, self.dataset_values, self.general,
                                                 self.training)

    def path(self, key: str) -> Path | None:
        raw = self.values.get(key)
        return resolve_path(self.root, raw) if raw else None

    @property
    def image_dir(self) -> Path | None:
        return self.path("image_dir")

    @property
    def is_reg(self) -> bool:
        return bool(self.values.get("is_reg", False))

    @property
    def name(self) -> str:
        if self.values.get("name"):
            return str(self.values["name"])
        if self.image_dir is not None:
            return self.image_dir.name
        meta = self.path("metadata_file")
        return meta.stem if meta else f"subset {self.index}"

    @property
    def label(self) -> str:
        """Address used in messages: ``datasets[0].subsets[1] (name)``."""
        return f"datasets[{self.dataset_index}].subsets[{self.index}] ({self.name})"

    @property
    def trigger_word(self) -> str | None:
        return self.values.get("trigger_word") or None


@dataclass
class Dataset:
    """One ``[[datasets]]`` entry."""

    index: int
    values: dict[str, Any]
    subsets: list[Subset]
    general: dict[str, Any]
    training: dict[str, Any]

    def get(self, key: str) -> Any:
        return dataset_toml.resolve_dataset_value(key, self.values, self.general, self.training)

    @property
    def style(self) -> str:
        return schema.detect_style([s.values for s in self.subsets]) or "dreambooth"


@dataclass
class Project:
    """A loaded project; ``doc`` keeps the file's comments for :func:`save`."""

    root: Path
    doc: tomlkit.TOMLDocument
    name: str
    backend: str
    general: dict[str, Any]
    datasets: list[Dataset]
    model: dict[str, Any]
    training: dict[str, Any]
    launch: dict[str, Any]
    sd_scripts_dir: Path | None = None

    @property
    def file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def subsets(self) -> list[Subset]:
        return [s for d in self.datasets for s in d.subsets]

    @property
    def model_hub_id(self) -> str | None:
        """The base model as a Hugging Face hub id ("org/name"), when it is one rather than a path."""
        raw = self.model.get("pretrained_model_name_or_path")
        return raw if raw and is_hub_id(self.root, raw) else None

    @property
    def model_reference(self) -> str | None:
        """The base model as a built-in reference ("lora-tui:tiny-sd15"), when it is one."""
        raw = self.model.get("pretrained_model_name_or_path")
        return raw.strip() if builtin_models.is_reference(raw) else None

    @property
    def model_path(self) -> Path | None:
        """The base model on disk (file or Diffusers folder); None when unset, a hub id or an unknown
        built-in name. A built-in reference gives its cache folder, built or not (core.builtin_models)."""
        raw = self.model.get("pretrained_model_name_or_path")
        if builtin_models.is_reference(raw):
            known = builtin_models.find(raw)
            return known.path() if known else None
        if not raw or is_hub_id(self.root, raw):
            return None
        return resolve_path(self.root, raw)

    @property
    def args(self) -> dict[str, Any]:
        """[model] and [training] merged: the values sd-scripts' argparse would hold."""
        return {**self.model, **self.training}


def resolve_path(root: Path, raw: str) -> Path:
    """Project paths may be relative to the project folder, absolute, or start with ``~``."""
    path = Path(os.path.expanduser(str(raw)))
    return path if path.is_absolute() else root / path


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(root: Path, raw: str) -> bool:
    """"org/name" that is not a file or folder relative to the project: what sd-scripts hands to
    ``from_pretrained`` as a Hugging Face model id."""
    return bool(_HUB_ID.match(raw)) and not (root / raw).exists() and not raw.endswith(
        (".safetensors", ".ckpt", ".pt", ".bin"))


def find_root(path: Path) -> Path:
    """Accept the project folder or its lora-tui.toml, and fail with the fix when neither."""
    path = Path(path).expanduser()
    if path.name == PROJECT_FILE and path.is_file():
        return path.parent.resolve()
    if not path.exists():
        raise ProjectError("project folder does not exist", path=path,
                           hint=f"create one with: lora-tui new {path}")
    if not path.is_dir():
        raise ProjectError("not a project folder", path=path, hint="pass the folder holding lora-tui.toml")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ProjectError("project folder is not readable", path=path, hint=f"chmod u+rx '{path}'")
    if not (path / PROJECT_FILE).is_file():
        raise ProjectError(f"no {PROJECT_FILE} here", path=path,
                           hint=f"run: lora-tui new {path}  (or lora-tui import ... --into {path})")
    return path.resolve()


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _table(doc: Mapping[str, Any], key: str, path: Path, text: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table", path=path, line=locate_key(text, key))
    return dict(_plain(value))


def _check_keys(table: Mapping[str, Any], legal: Mapping[str, str], where: str, path: Path,
                text: str) -> None:
    for key, value in table.items():
        if key not in legal:
            raise ConfigError(f"unknown key '{key}' in [{where}]", path=path,
                              line=locate_key(text, f"{where}.{key}"),
                              hint="allowed: " + ", ".join(sorted(legal)))
        err = schema.check_type(legal[key], value) or schema.check_range(key, value)
        if err:
            raise ConfigError(f"{where}.{key}: {err}", path=path, line=locate_key(text, f"{where}.{key}"))


def load(path: Path) -> Project:
    """Load and validate a project; the first problem becomes a one-line :class:`ConfigError`."""
    root = find_root(path)
    return from_document(root, parse_document(root / PROJECT_FILE, PROJECT_FILE))


def from_document(root: Path, doc: tomlkit.TOMLDocument) -> Project:
    """Validate a parsed project file (as :func:`load` does) and build the model from it."""
    file = root / PROJECT_FILE
    text = doc.as_string()
    for key in doc:
        if key not in ("project", "model", "general", "datasets", "training", "launch"):
            raise ConfigError(f"unknown table [{key}]", path=file, line=locate_key(text, key),
                              hint="allowed: [project], [model], [general], [[datasets]], [training], [launch]")
    meta = _table(doc, "project", file, text)
    _check_keys(meta, PROJECT_KEYS, "project", file, text)
    backend = meta.get("backend", "builtin")
    if backend not in BACKENDS:
        raise ConfigError(f"project.backend must be one of {', '.join(BACKENDS)}, got {backend!r}",
                          path=file, line=locate_key(text, "project.backend"))
    model = _table(doc, "model", file, text)
    training = _table(doc, "training", file, text)
    launch = _table(doc, "launch", file, text)
    _check_keys(launch, LAUNCH_KEYS, "launch", file, text)
    for where, table in (("model", model), ("training", training)):
        for problem in train_args.validate(table):
            raise ConfigError(f"{where}.{problem}", path=file,
                              line=locate_key(text, f"{where}.{problem.path}"))
    general = _table(doc, "general", file, text)
    raw_datasets = _plain(doc.get("datasets", []))
    if not isinstance(raw_datasets, list):
        raise ConfigError("datasets must be [[datasets]] tables", path=file, line=locate_key(text, "datasets"))
    for problem in dataset_toml.validate(_strip_project_keys(general, raw_datasets),
                                         masked_loss=bool(training.get("masked_loss")),
                                         bucket_step_multiple=_bucket_step_multiple(root, model)):
        raise ConfigError(str(problem), path=file, line=locate_key(text, problem.path))
    for di, ds in enumerate(raw_datasets):
        for si, sub in enumerate(ds.get("subsets", [])):
            for key, spec in PROJECT_SUBSET_KEYS.items():
                if key in sub and schema.check_type(spec, sub[key]):
                    where = f"datasets[{di}].subsets[{si}].{key}"
                    raise ConfigError(f"{where}: {schema.check_type(spec, sub[key])}", path=file,
                                      line=locate_key(text, where))
    datasets = []
    for di, ds in enumerate(raw_datasets):
        values = {k: v for k, v in ds.items() if k != "subsets"}
        subsets = [Subset(di, si, dict(sub), values, general, training, root)
                   for si, sub in enumerate(ds.get("subsets", []))]
        datasets.append(Dataset(di, values, subsets, general, training))
    sd_dir = meta.get("sd_scripts_dir")
    return Project(root=root, doc=doc, name=str(meta.get("name") or root.name), backend=backend,
                   general=general, datasets=datasets, model=model, training=training, launch=launch,
                   sd_scripts_dir=resolve_path(root, sd_dir) if sd_dir else None)


def _bucket_step_multiple(root: Path, model: Mapping[str, Any]) -> int:
    """32 for an SDXL base model (sdxl_train_network.py), else 64; read from the model's header."""
    from lora_tui.core.family_checks import bucket_step_multiple
    from lora_tui.core.model_family import family_of_value

    return bucket_step_multiple(family_of_value(model.get("pretrained_model_name_or_path"), root))


def _strip_project_keys(general: Mapping[str, Any], datasets: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = []
    for ds in datasets:
        if not isinstance(ds, Mapping):
            out.append(ds)
            continue
        copy = dict(ds)
        subs = ds.get("subsets", [])
        if isinstance(subs, list):
            copy["subsets"] = [{k: v for k, v in s.items() if k not in PROJECT_SUBSET_KEYS}
                               if isinstance(s, Mapping) else s for s in subs]
        out.append(copy)
    return {"general": dict(general), "datasets": out}


def save(project: Project) -> None:
    """Write ``project.doc`` back atomically, comments and layout intact."""
    atomic_write_text(project.file, tomlkit.dumps(project.doc))


def set_value(project: Project, table: str, key: str, value: Any) -> None:
    """Set ``[table] key = value`` in the document (creating the table), keeping comments."""
    if table not in project.doc:
        project.doc.add(table, tomlkit.table())
    tbl = project.doc[table]
    assert isinstance(tbl, Table)
    tbl[key] = value


def update(project: Project, where: tuple[str | int, ...], key: str, value: Any) -> Project:
    """Set (or with ``None`` remove) one value, validate the result exactly like a load, then save.

    ``where`` addresses the table: ``("training",)`` or ``("datasets", 0, "subsets", 1)``. On any
    problem a :class:`ConfigError` says why and the file is left as it was; comments survive.
    """
    updated = with_value(project, where, key, value)
    save(updated)
    return updated


def with_value(project: Project, where: tuple[str | int, ...], key: str, value: Any) -> Project:
    """:func:`update` without the save: the project as it would be (a form previews unsaved edits)."""
    doc = tomlkit.parse(project.doc.as_string())
    table: Any = doc
    for part in where:
        if isinstance(part, str) and part not in table:
            table.add(part, tomlkit.table())
        table = table[part]
    if value is None:
        if key in table:
            del table[key]
    else:
        table[key] = value
    return from_document(project.root, doc)


def sd_scripts_dataset_config(project: Project,
                              image_dirs: Mapping[tuple[int, int], Path] | None = None) -> dict[str, Any]:
    """The dataset config sd-scripts will be given: absolute paths, our keys stripped,
    ``caption_extension`` always explicit (sd-scripts' own default is ``.caption``).

    ``image_dirs`` replaces some subsets' folders (staging folders that leave excluded images out).
    """
    general = dict(project.general)
    general.setdefault("caption_extension", DEFAULT_CAPTION_EXTENSION)
    datasets = []
    for ds in project.datasets:
        out = dict(ds.values)
        subsets = []
        for sub in ds.subsets:
            values = {k: v for k, v in sub.values.items() if k not in PROJECT_SUBSET_KEYS}
            for key in PATH_KEYS:
                if values.get(key):
                    values[key] = str(resolve_path(project.root, values[key]))
            if image_dirs and (ds.index, sub.index) in image_dirs:
                values["image_dir"] = str(image_dirs[(ds.index, sub.index)])
            subsets.append(values)
        out["subsets"] = subsets
        datasets.append(out)
    return {"general": general, "datasets": datasets}


def datasets_from_config(config: Mapping[str, Any], *, root: Path,
                         args: Mapping[str, Any] | None = None) -> list[Dataset]:
    """The datasets of a plain sd-scripts dataset config (``dataset_toml.load``), resolved like a project's.

    This is what lets the built-in trainer take the very file sd-scripts gets with ``--dataset_config``
    and reuse the scan and steps code. ``args`` are the command-line values the fallback chain ends in;
    relative paths resolve against ``root`` (sd-scripts resolves them against its working folder). An
    unset ``caption_extension`` means the args' value or sd-scripts' own default ``.caption``.
    """
    args = dict(args or {})
    general = dict(config.get("general", {}))
    general.setdefault("caption_extension", args.get("caption_extension") or schema.EFFECTIVE_DEFAULTS[
        "caption_extension"])
    datasets = []
    for di, ds in enumerate(config.get("datasets", [])):
        values = {k: v for k, v in ds.items() if k != "subsets"}
        subsets = [Subset(di, si, dict(sub), values, general, args, root)
                   for si, sub in enumerate(ds.get("subsets", []))]
        datasets.append(Dataset(di, values, subsets, general, args))
    return datasets

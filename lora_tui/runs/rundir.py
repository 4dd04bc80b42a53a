"""Creating a run folder (DESIGN.md's run contract) and the command that trains into it.

``runs/<UTC yyyymmdd-hhmmss>-<slug>/`` gets, before anything starts: run.toml (a frozen snapshot of
the settings, versions and a dataset hash), dataset.toml and args.toml (exactly what the trainer is
given), command.txt, and status.json in state ``queued``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui import __version__
from lora_tui.core import builtin_models, configs, scan, train_args
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.fsio import atomic_write_bytes, atomic_write_text
from lora_tui.core.model_path import check_model_path
from lora_tui.core.project import Project
from lora_tui.runs import backends, contract
from lora_tui.runs.backends.base import Backend

DATASET_FILES = "dataset-files.json.gz"


@dataclass(frozen=True)
class Run:
    dir: Path
    backend: str
    dataset_config: Path
    args_config: Path
    argv: list[str]
    cwd: Path


def run_id(name: str, now: float | None = None) -> str:
    """``<UTC yyyymmdd-hhmmss>-<slug>``; the slug is a safe file name whatever the project is called."""
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    return f"{stamp:%Y%m%d-%H%M%S}-{configs.safe_name(name)}"


def dataset_files(project: Project, scans: list[scan.SubsetScan] | None = None) -> dict[str, list[list[Any]]]:
    """Every training file as it is now: per subset, [image name, size, caption text or None].

    Kept with the run (``dataset-files.json.gz``) so two runs can say which images and captions
    changed between them, not only that the hash differs. Pixels are not read (10,000 images would
    take minutes); a replaced image of another size shows up by its size.
    """
    out: dict[str, list[list[Any]]] = {}
    for result in scans if scans is not None else scan.scan_project(project):
        rows = out.setdefault(result.subset.label, [])
        for record in result.records:
            try:
                size = os.stat(record.path_text).st_size
            except OSError:
                size = -1
            caption = record.caption.raw if record.caption is not None else record.meta_caption
            rows.append([record.name, size, caption])
    return out


def dataset_hash(project: Project, scans: list[scan.SubsetScan] | None = None,
                 files: dict[str, list[list[Any]]] | None = None) -> str:
    """SHA-256 over every image's name and size and every caption's text, in project order: "did the
    data change between runs" in one value."""
    digest = hashlib.sha256()
    for label, rows in (files if files is not None else dataset_files(project, scans)).items():
        digest.update(f"[{label}]\n".encode())
        for name, size, caption in rows:
            digest.update(f"{name}\0{size}\0".encode())
            if caption is not None:
                digest.update(caption.encode("utf-8"))
            digest.update(b"\n")
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _without_none(value: Any) -> Any:
    """TOML has no null: drop unset values from the snapshot."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def check_startable(project: Project, *, backend: str | None = None, model: str | None = None,
                    max_train_steps: int | None = None) -> Backend:
    """The one-line refusals that come before any dataset check: no model, no usable backend."""
    chosen = backends.get(backend or project.backend)
    chosen.check(project)
    if max_train_steps is not None and int(max_train_steps) < 1:
        raise LoraTuiError(f"max_train_steps must be at least 1, got {max_train_steps}",
                           hint="pass --max-train-steps 1 or more")
    if model and builtin_models.is_reference(model):
        builtin_models.lookup(model)  # an unknown name: one line listing the known ones
    elif not model and project.model_reference:
        builtin_models.lookup(project.model_reference, path=project.file)
    elif not project.model_path and not project.model_hub_id and not model:
        raise LoraTuiError("no base model: [model] pretrained_model_name_or_path is empty", path=project.file,
                           hint=f"set it, or pass --model ({builtin_models.known_names()} is a tiny test model; "
                                "lora-tui make-tiny-model DIR writes one)")
    # a few stats, not a model load: a path that cannot be a model is refused before a run folder exists
    if model and not builtin_models.is_reference(model):
        check_model_path(Path(model).expanduser(), hint="give --model a .safetensors/.ckpt file or a Diffusers folder")
    elif not model and project.model_path is not None and not project.model_reference:
        check_model_path(project.model_path, hint="fix [model] pretrained_model_name_or_path in lora-tui.toml "
                         "(a .safetensors/.ckpt file or a Diffusers folder), or pass --model")
    known = builtin_models.find(model) if builtin_models.is_reference(model) else None
    chosen.check_model(project, known.path() if known else Path(model).expanduser() if model else project.model_path)
    return chosen


def create_run(project: Project, *, backend: str | None = None, model: str | None = None,
               max_train_steps: int | None = None, cli_argv: list[str] | None = None,
               scans: list[scan.SubsetScan] | None = None, name: str | None = None, resume: str | None = None,
               launch: str = "direct") -> Run:
    """Make the run folder and everything in it that exists before the trainer starts.

    ``scans`` is a scan the caller already made (for the checks), so captions are read once.
    ``name`` names the run (default: the project's); ``resume`` a saved state to continue from;
    ``launch`` says who will start it (``direct``, or ``queue``: the project's queue drainer).
    """
    chosen = check_startable(project, backend=backend, model=model, max_train_steps=max_train_steps)
    run_dir = _reserve_run_dir(project.root / "runs", run_id(name or project.name))
    try:
        return _fill_run(project, run_dir, backend=chosen, model=model, max_train_steps=max_train_steps,
                         cli_argv=cli_argv, scans=scans, resume=resume, launch=launch, name=name)
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise LoraTuiError(f"cannot write the run folder: {exc.strerror or exc}", path=run_dir,
                           hint="check free space and that the project folder is writable") from None
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run folder for monitors to puzzle over
        raise


def _reserve_run_dir(runs: Path, rid: str) -> Path:
    """Create ``runs/<rid>`` (or ``<rid>-2``, …) with an exclusive mkdir, so two runs started in the same
    second never share a folder; an unwritable project is a one-line error."""
    n = 1
    while True:
        run_dir = runs / (rid if n == 1 else f"{rid}-{n}")
        try:
            if not runs.is_dir():
                runs.mkdir(parents=True)
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            if not runs.is_dir():
                raise LoraTuiError("runs/ is a file, not a folder", path=runs,
                                   hint="move it away so runs can be created") from None
            n += 1
        except OSError as exc:
            raise LoraTuiError(f"cannot create the run folder: {exc.strerror or exc}", path=run_dir,
                               hint="check that the project folder and its runs/ are writable") from None


def _fill_run(project: Project, run_dir: Path, *, backend: Backend, model: str | None, max_train_steps: int | None,
              cli_argv: list[str] | None, scans: list[scan.SubsetScan] | None, resume: str | None, launch: str,
              name: str | None) -> Run:
    overrides: dict[str, Any] = {"output_dir": str(run_dir / "output"), "logging_dir": str(run_dir / "logs")}
    reference = model if model and builtin_models.is_reference(model) else None
    if model and not reference:
        overrides["pretrained_model_name_or_path"] = str(Path(model).expanduser().resolve())
    reference = reference or (None if model else project.model_reference)
    if reference:  # the built-in trainer builds it in its own (torch) process; sd-scripts gets the folder
        overrides["pretrained_model_name_or_path"] = (
            builtin_models.lookup(reference).reference if backend.name == "builtin"
            else str(builtin_models.ensure_built(reference)))
    if max_train_steps is not None:
        overrides.update(max_train_steps=int(max_train_steps), max_train_epochs=None)
    if resume:
        overrides["resume"] = str(Path(resume).expanduser().resolve())
    from lora_tui.core import staging

    staging_root = run_dir / "staging"
    dataset_path, args_path = run_dir / "dataset.toml", run_dir / "args.toml"
    # rendered once under their final names: the args file names the dataset file it is given
    generated = configs.build(project, overrides=overrides, staging_root=staging_root, dataset_config=dataset_path,
                              args_config=args_path, left_out=staging.left_out(project, scans), run=run_dir.name)
    staging.build_staging(project, generated.left_out.paths, staging_root)
    atomic_write_text(dataset_path, generated.dataset_text)
    atomic_write_text(args_path, generated.args_text)
    argv, cwd = backend.command(project, dataset_path, args_path, run_dir)
    files = dataset_files(project, scans)
    now = time.time()
    snapshot = {
        "run": {"id": run_dir.name, "name": name or project.name, "created_at": now, "backend": backend.name,
                "argv": cli_argv or [], "command": argv, "cwd": str(cwd), "launch": launch},
        "project": {"file": str(project.file), "root": str(project.root), "name": project.name,
                    "model": project.model, "training": project.training, "launch": project.launch},
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "versions": {k: v for k, v in {"lora-tui": __version__, "python": platform.python_version(),
                                       "torch": _version("torch"), "diffusers": _version("diffusers"),
                                       "transformers": _version("transformers"),
                                       "accelerate": _version("accelerate")}.items() if v},
        "dataset": {"hash": dataset_hash(project, files=files), "images": sum(len(r) for r in files.values())},
    }
    atomic_write_text(run_dir / "run.toml", "# Frozen when the run was created; never rewritten.\n"
                      + tomlkit.dumps(_without_none(json.loads(json.dumps(snapshot, default=str)))))
    atomic_write_bytes(run_dir / DATASET_FILES, gzip.compress(json.dumps(files, ensure_ascii=False).encode(), 6))
    atomic_write_text(run_dir / "command.txt", train_args.shell_join(argv) + "\n")
    model_path = overrides.get("pretrained_model_name_or_path") or str(project.model_path or "")
    contract.write_status(run_dir, contract.new_status(
        state="queued", host=platform.node(), created_at=now, launch=launch, backend=backend.name,
        model=model_path, name=name or project.name))
    return Run(run_dir, backend.name, dataset_path, args_path, argv, cwd)

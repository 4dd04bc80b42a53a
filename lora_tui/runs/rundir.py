"""Creating a run folder (DESIGN.md's run contract) and the command that trains into it.

``runs/<UTC yyyymmdd-hhmmss>-<slug>/`` gets, before anything starts: run.toml (a frozen snapshot of
the settings, versions and a dataset hash), dataset.toml and args.toml (exactly what the trainer is
given), command.txt, and status.json in state ``queued``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import tomlkit

from lora_tui import __version__
from lora_tui.core import configs, scan, train_args
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.fsio import atomic_write_text
from lora_tui.core.project import Project


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


def dataset_hash(project: Project, scans: list[scan.SubsetScan] | None = None) -> str:
    """SHA-256 over every image's name and size and every caption's bytes, in project order.

    Pixels are not read (10,000 images would take minutes); a replaced image of another size or a
    changed caption changes the hash, which is what "did the data change between runs" needs.
    """
    digest = hashlib.sha256()
    for result in scans if scans is not None else scan.scan_project(project):
        digest.update(f"[{result.subset.label}]\n".encode())
        for record in result.records:
            try:
                size = os.stat(record.path_text).st_size
            except OSError:
                size = -1
            digest.update(f"{record.name}\0{size}\0".encode())
            if record.caption is not None:
                digest.update(record.caption.raw.encode("utf-8"))
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


def builtin_argv(dataset_config: Path, args_config: Path, run_dir: Path, launch: dict[str, Any]) -> list[str]:
    """The built-in trainer's command; more than one process goes through accelerate's launcher."""
    tail = ["-m", "lora_tui.train", "--dataset_config", str(dataset_config), "--config_file", str(args_config),
            "--run_dir", str(run_dir)]
    procs = int(launch.get("num_processes", 1))
    if procs <= 1 and int(launch.get("num_machines", 1)) == 1:
        return [sys.executable, *tail]
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(procs),
            "--num_cpu_threads_per_process", str(launch.get("num_cpu_threads_per_process", 1))]
    if procs > 1:
        argv.append("--multi_gpu")
    for key in ("num_machines", "machine_rank", "main_process_ip", "main_process_port", "gpu_ids"):
        if launch.get(key) is not None:
            argv += [f"--{key}", str(launch[key])]
    return argv + tail


def create_run(project: Project, *, backend: str | None = None, model: str | None = None,
               max_train_steps: int | None = None, cli_argv: list[str] | None = None,
               scans: list[scan.SubsetScan] | None = None) -> Run:
    """Make the run folder and everything in it that exists before the trainer starts.

    ``scans`` is a scan the caller already made (for the steps check), so captions are read once.
    """
    backend = backend or project.backend
    if backend == "sd-scripts" and project.sd_scripts_dir is None:
        raise LoraTuiError("backend sd-scripts needs [project] sd_scripts_dir", path=project.file,
                           hint="point it at your kohya-ss/sd-scripts checkout, or use --backend builtin")
    if max_train_steps is not None and int(max_train_steps) < 1:
        raise LoraTuiError(f"max_train_steps must be at least 1, got {max_train_steps}",
                           hint="pass --max-train-steps 1 or more")
    if not project.model_path and not model:
        raise LoraTuiError("no base model: [model] pretrained_model_name_or_path is empty", path=project.file,
                           hint="set it, or pass --model (lora-tui make-tiny-model DIR makes a test model)")
    run_dir = _reserve_run_dir(project.root / "runs", run_id(project.name))
    try:
        return _fill_run(project, run_dir, backend=backend, model=model, max_train_steps=max_train_steps,
                         cli_argv=cli_argv, scans=scans)
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


def _fill_run(project: Project, run_dir: Path, *, backend: str, model: str | None, max_train_steps: int | None,
              cli_argv: list[str] | None, scans: list[scan.SubsetScan] | None) -> Run:
    overrides: dict[str, Any] = {"output_dir": str(run_dir / "output"), "logging_dir": str(run_dir / "logs")}
    if model:
        overrides["pretrained_model_name_or_path"] = str(Path(model).expanduser().resolve())
    if max_train_steps is not None:
        overrides.update(max_train_steps=int(max_train_steps), max_train_epochs=None)
    generated = configs.build(project, configs_dir=run_dir, overrides=overrides)
    from lora_tui.core import staging

    staging.build_staging(project, staging.excluded_paths(project))
    dataset_path, args_path = run_dir / "dataset.toml", run_dir / "args.toml"
    atomic_write_text(dataset_path, generated.dataset_text.replace(str(generated.dataset_config), str(dataset_path)))
    atomic_write_text(args_path, generated.args_text.replace(str(generated.dataset_config), str(dataset_path)))
    if backend == "builtin":
        argv, cwd = builtin_argv(dataset_path, args_path, run_dir, project.launch), project.root
    else:
        assert project.sd_scripts_dir is not None
        argv = train_args.launch_command(project.sd_scripts_dir / "train_network.py", args_path, project.launch)
        cwd = project.sd_scripts_dir
    snapshot = {
        "run": {"id": run_dir.name, "created_at": time.time(), "backend": backend, "argv": cli_argv or [],
                "command": argv, "cwd": str(cwd)},
        "project": {"file": str(project.file), "name": project.name, "model": project.model,
                    "training": project.training, "launch": project.launch},
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "versions": {k: v for k, v in {"lora-tui": __version__, "python": platform.python_version(),
                                       "torch": _version("torch"), "diffusers": _version("diffusers"),
                                       "transformers": _version("transformers"),
                                       "accelerate": _version("accelerate")}.items() if v},
        "dataset": {"hash": dataset_hash(project, scans)},
    }
    atomic_write_text(run_dir / "run.toml", "# Frozen when the run was created; never rewritten.\n"
                      + tomlkit.dumps(_without_none(json.loads(json.dumps(snapshot, default=str)))))
    atomic_write_text(run_dir / "command.txt", train_args.shell_join(argv) + "\n")
    atomic_write_text(run_dir / "status.json", json.dumps({"state": "queued", "pid": None, "pgid": None,
                                                          "host": platform.node(), "started_at": None,
                                                          "ended_at": None, "exit_code": None, "reason": None,
                                                          "last_step": 0, "total_steps": None}, indent=1) + "\n")
    return Run(run_dir, backend, dataset_path, args_path, argv, cwd)

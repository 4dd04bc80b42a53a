"""Starting runs from the app: the same checks and the same run folder as ``lora-tui train``.

The app never owns a training process: a launch creates the run folder (runs/rundir), then either
hands it to a detached supervisor (runs/launch: its own session, it outlives the app) or to the
project's queue and its drainer (runs/queue). Everything here blocks for seconds at most and runs
in a worker thread, never on the UI's event loop. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_tui.core import lint, scan, staging, steps
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project


@dataclass
class Preflight:
    """What the train screen shows before a launch: lint findings, the steps math, the command."""

    errors: list[lint.Finding] = field(default_factory=list)
    warnings: list[lint.Finding] = field(default_factory=list)
    steps: steps.StepsReport | None = None
    problem: str | None = None  # a one-line refusal (no model, no backend, no images)
    excluded: int = 0
    scans: list[Any] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.errors or self.problem)


def preflight(proj: Project, *, backend: str, model: str | None = None,
              max_train_steps: int | None = None) -> Preflight:
    """The checks of ``lora-tui train`` (errors block; warnings ask for a confirmation)."""
    from lora_tui.runs.rundir import check_startable

    result = Preflight()
    try:
        check_startable(proj, backend=backend, model=model, max_train_steps=max_train_steps)
    except LoraTuiError as exc:
        result.problem = str(exc)
    try:
        result.scans = scan.scan_project(proj)
        report = lint.check_project(proj, scans=result.scans)
        result.steps = steps.compute(proj, result.scans)
    except LoraTuiError as exc:
        result.problem = result.problem or str(exc)
        return result
    skip = {"sd-scripts-missing"} if backend != "sd-scripts" else set()
    if model:
        skip |= {"model-unset", "model-missing", "model-hub"}
    if max_train_steps:
        skip.add("steps-default")
    findings = [f for f in report.findings if f.code not in skip]
    result.errors = [f for f in findings if f.severity == lint.ERROR]
    result.warnings = [f for f in findings if f.severity == lint.WARNING]
    result.problem = result.problem or result.steps.blocking_problem()
    result.excluded = len(staging.excluded_paths(proj))
    return result


def command_line(proj: Project, backend: str, model: str | None = None, max_train_steps: int | None = None,
                 queue: bool = False) -> str:
    """The CLI command that does what the launch button does (to copy into a script)."""
    import shlex

    words = ["lora-tui", "train", str(proj.root), "--detach"]
    if backend != proj.backend:
        words += ["--backend", backend]
    if model:
        words += ["--model", model]
    if max_train_steps:
        words += ["--max-train-steps", str(max_train_steps)]
    if queue:
        words = [w for w in words if w != "--detach"] + ["--queue"]
    return shlex.join(words)


def launch(proj: Project, *, backend: str, model: str | None = None, max_train_steps: int | None = None,
           queue: bool = False, resume: str | None = None, name: str | None = None,
           scans: list[Any] | None = None) -> tuple[Path, str]:
    """Create the run and start it (or queue it); returns its folder and a line saying what happened."""
    from lora_tui.runs import queue as run_queue
    from lora_tui.runs.launch import spawn_supervisor
    from lora_tui.runs.rundir import create_run

    argv = ["train", str(proj.root)] + (["--queue"] if queue else ["--detach"])
    run = create_run(proj, backend=backend, model=model, max_train_steps=max_train_steps, cli_argv=argv,
                     scans=scans, name=name, resume=resume, launch="queue" if queue else "direct")
    if queue:
        position = run_queue.enqueue(proj.root, run.dir.name)
        if not run_queue.drainer_running(proj.root):
            run_queue.start_drainer(proj.root)
        return run.dir, f"{run.dir.name} queued at position {position}"
    spawn_supervisor(run.dir)
    return run.dir, f"{run.dir.name} started in the background (it outlives the app)"


def resume(run_dir: Path) -> tuple[Path, str]:
    """A new run continuing ``run_dir`` from its newest saved state (as ``lora-tui resume``)."""
    from lora_tui.core import project
    from lora_tui.runs.control import resume_plan

    plan = resume_plan(run_dir, stop_with="s")
    return launch(project.load(plan.project_root), backend=plan.backend or "builtin", model=plan.model,
                  max_train_steps=plan.max_train_steps, resume=str(plan.state), name=plan.name)

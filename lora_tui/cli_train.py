"""``lora-tui train``: check the project, create the run, hand it to a supervisor, follow it here.

Without ``--detach`` the command follows the run; Ctrl+C asks whether to stop the run or only detach
from it, SIGTERM stops it (saving first), a hang-up leaves it training.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_tui.cli_runs import _err, _out, _restart_queue
from lora_tui.core.errors import LoraTuiError, Terminated


def _preflight(proj: Any, args: argparse.Namespace, backend: str) -> list[Any]:
    """Lint before anything starts: errors block, warnings are printed, left-out images are named."""
    from lora_tui.core import lint, scan, staging, steps

    scans = scan.scan_project(proj)
    report = lint.check_project(proj, scans=scans)
    skip = set()
    if args.model:
        skip |= {"model-unset", "model-missing", "model-invalid", "model-hub", "model-builtin",
                 "model-builtin-unknown", "model-builtin-sd-scripts"}
    if backend != "sd-scripts":
        skip |= {"sd-scripts-missing", "model-builtin-sd-scripts"}
    if args.max_train_steps:
        skip.add("steps-default")
    findings = [f for f in report.findings if f.code not in skip]
    errors = [f for f in findings if f.severity == lint.ERROR]
    for finding in findings:
        if finding.severity != lint.INFO:
            _err(finding.line())
    if errors:
        raise LoraTuiError(f"{len(errors)} lint error(s) above block the run", path=proj.file,
                           hint="fix them and check again: lora-tui check PROJECT")
    problem = steps.compute(proj, scans).blocking_problem()
    if problem:
        raise LoraTuiError(problem, path=proj.file, hint="fix the dataset first (lora-tui check)")
    for line in staging.left_out(proj, scans).lines():  # what the run's staging keeps from the trainer
        _err(line)
    return scans


def _check_resume(path: str) -> str:
    """A state folder as the trainers save them (both write train_state.json into it)."""
    state = Path(path).expanduser()
    if not state.is_dir():
        raise LoraTuiError("no saved state there", path=state,
                           hint="give a state folder a run saved (runs/<id>/state/…-state), or use lora-tui resume RUN")
    if not (state / "train_state.json").is_file():
        raise LoraTuiError("not a saved training state (no train_state.json in it)", path=state,
                           hint="give a …-state folder from a run's state/ or output/, or use lora-tui resume RUN")
    return str(state.resolve())


def start_run(proj: Any, args: argparse.Namespace, *, resume: str | None = None, name: str | None = None,
              overrides: dict[str, Any] | None = None) -> int:
    """Create the run, then queue it, leave it, or follow it here."""
    from lora_tui.runs import queue
    from lora_tui.runs.launch import spawn_supervisor
    from lora_tui.runs.rundir import check_startable, create_run

    backend = args.backend or proj.backend
    _download_rule(args)
    check_startable(proj, backend=backend, model=args.model, max_train_steps=args.max_train_steps)
    previous = signal.signal(signal.SIGTERM, _terminate)  # until the run is handed over: clean up, exit 143
    try:
        scans = _preflight(proj, args, backend)
        run = create_run(proj, backend=backend, model=args.model, max_train_steps=args.max_train_steps,
                         cli_argv=sys.argv[1:], scans=scans, name=name or args.name, resume=resume,
                         launch="queue" if args.queue else "direct")
    finally:
        signal.signal(signal.SIGTERM, previous)
    _out(f"run {run.dir.name}  ({run.dir})")
    if args.queue:
        position = queue.enqueue(proj.root, run.dir.name)
        if not queue.drainer_running(proj.root):
            queue.start_drainer(proj.root)
        _out(f"queued at position {position}; see it with: lora-tui queue {proj.root}")
        return 0
    other = queue.active_run(proj.root)
    if other is not None:
        _err(f"note: {other.id} of this project is {other.state} too; both share the GPU (--queue waits its turn)")
    if args.detach:
        spawn_supervisor(run.dir)
        _out("training in the background; it survives logging out")
        _out(f"  follow it:  lora-tui watch {run.dir}")
        _out(f"  stop it:    lora-tui stop {run.dir}")
        return 0
    return attach(run.dir, start=lambda: spawn_supervisor(run.dir))


def _download_rule(args: argparse.Namespace) -> None:
    """Offline unless --allow-download (core.offline): the run's processes inherit the answer."""
    from lora_tui.core import offline

    allow = bool(getattr(args, "allow_download", False))
    if allow and args.queue:
        raise LoraTuiError("--allow-download cannot be used with --queue: a queued run starts later, from the "
                           "queue's process", hint="start the run directly, or get the files once and train offline")
    if allow:
        os.environ[offline.ALLOW_DOWNLOAD_ENV] = "1"
    else:
        os.environ.pop(offline.ALLOW_DOWNLOAD_ENV, None)


def _terminate(_signum: int, _frame: Any) -> None:
    raise Terminated


def cmd_train(args: argparse.Namespace) -> int:
    from lora_tui.core import project

    proj = project.load(Path(args.project))
    _restart_queue(proj.root)
    resume = _check_resume(args.resume) if args.resume else None
    return start_run(proj, args, resume=resume)


class _Attach:
    """Signals while following a run we started: Ctrl+C asks, SIGTERM stops the run, SIGHUP detaches."""

    def __init__(self, run_dir: Path, printer: Any) -> None:
        self.run_dir = run_dir
        self.printer = printer
        self.pending: list[int] = []
        self.stop_sent: str | None = None

    def install(self) -> dict[int, Any]:
        def remember(signum: int, _frame: Any) -> None:
            self.pending.append(signum)

        return {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def _stop(self, now: bool, by: str, signum: int = signal.SIGTERM) -> None:
        from lora_tui.runs.control import stop_run

        mode = "now" if now else "graceful"
        if self.stop_sent == mode or self.stop_sent == "now":
            return
        self.stop_sent = mode
        self.printer.line(stop_run(self.run_dir, now=now, by=by, signum=signum))

    def _ask(self) -> str:
        """The question after a Ctrl+C. A signal while it waits is its answer: Ctrl+C again stops,
        SIGTERM stops (as always), a hang-up detaches."""
        def answer_with(signum: int, _frame: Any) -> None:
            raise _Answered({signal.SIGINT: "s", signal.SIGTERM: "t", signal.SIGHUP: "h"}[signum])

        previous = {sig: signal.signal(sig, answer_with) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            self.printer.ask("Ctrl+C: [s]top the run (it saves first), [d]etach (it goes on training), "
                             "or keep [w]atching? ")
            answer = sys.stdin.readline().strip().lower()
        except _Answered as got:
            return got.answer
        except OSError:
            return "h"
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return answer[:1] or "w"

    def __call__(self) -> str | None:
        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGHUP:
                return "detach"  # the terminal is gone; the run goes on
            if signum == signal.SIGTERM:
                self._stop(now=self.stop_sent is not None, by="SIGTERM to lora-tui train")
                continue
            if self.stop_sent is not None:  # Ctrl+C again while stopping: at once
                self._stop(now=True, by="a second Ctrl+C in lora-tui train")
                continue
            answer = self._ask() if sys.stdin.isatty() else "s"
            if answer == "h":
                return "detach"
            if answer == "d":
                self.printer.line(f"detached; the run goes on. Follow it: lora-tui watch {self.run_dir}")
                return "detach"
            if answer == "s":
                self._stop(now=False, by="Ctrl+C in lora-tui train", signum=signal.SIGINT)
            if answer == "t":
                self._stop(now=False, by="SIGTERM to lora-tui train")
        return None


class _Answered(Exception):
    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


def attach(run_dir: Path, start: Callable[[], Any] | None = None) -> int:
    """Follow a run here; ``start`` launches it once the signal handlers are in place, so a Ctrl+C or
    SIGTERM while it starts is acted on, not lost."""
    from lora_tui.runs.follow import Printer, follow

    printer = Printer(sys.stdout, sys.stdout.isatty())
    handler = _Attach(run_dir, printer)
    previous = handler.install()
    try:
        if start is not None:
            start()
        return follow(run_dir, sys.stdout, tty=printer.tty, interrupted=handler, printer=printer)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)



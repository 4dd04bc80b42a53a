"""``lora-tui runs|watch|stop|resume|diff|queue`` (and the parser of ``train``, in ``cli_train``):
runs you can start, leave and find again. Each is a thin call into ``runs/``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError

Handler = Callable[[argparse.Namespace], int]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _restart_queue(root: Path | None) -> None:
    if root is None:
        return
    from lora_tui.runs import queue

    note = queue.ensure_draining(root)
    if note:
        _err(note)


# -- runs / watch / stop / resume / diff / queue --------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> int:
    from lora_tui.runs import reader
    from lora_tui.runs.follow import fmt_duration, fmt_mb, fmt_rate

    root = Path(args.project)
    if not (root / "lora-tui.toml").is_file():
        raise LoraTuiError("not a lora-tui project (no lora-tui.toml)", path=root, hint="give a project folder")
    _restart_queue(root)
    runs = reader.list_runs(root)
    if args.json:
        _json([info.to_json() for info in runs])
        return 0
    if not runs:
        _out(f"no runs yet in {root / 'runs'}; start one: lora-tui train {args.project}")
        return 0
    _out(f"{'run':<34} {'state':<9} {'step':>11} {'ep':>3} {'loss':>7} {'avg':>7} {'speed':>10} {'ETA':>7} "
         f"{'peak':>8} {'time':>7}  output")
    for info in runs:
        step = f"{info.step}/{info.total_steps}" if info.total_steps else str(info.step or "")
        loss = f"{info.loss:.4f}" if info.loss is not None else ""
        avg = f"{info.loss_avg:.4f}" if info.loss_avg is not None else ""
        eta = fmt_duration(info.eta_s) if info.eta_s is not None else ""
        peak = fmt_mb(info.peak_vram_mb) if info.peak_vram_mb else ""
        took = fmt_duration(info.duration_s) if info.duration_s is not None else ""
        output = Path(info.output).name if info.output else ""
        if info.best:
            output += f"  ★ best: {Path(info.best['path']).name}"
        _out(f"{info.id:<34} {info.state:<9} {step:>11} {info.epoch or '':>3} {loss:>7} {avg:>7} "
             f"{fmt_rate(info.steps_per_s) if info.active else '':>10} {eta:>7} {peak:>8} {took:>7}  {output}")
        if info.state in ("failed", "crashed", "stopped", "unknown") and info.reason:
            _out(f"  └ {info.reason}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from lora_tui.runs.control import project_of, resolve_run
    from lora_tui.runs.follow import follow

    run_dir = resolve_run(args.refs)
    _restart_queue(project_of(run_dir))
    quit_flag: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        quit_flag.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = follow(run_dir, sys.stdout, tty=sys.stdout.isatty(),
                      interrupted=lambda: "quit" if quit_flag else None)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if quit_flag and quit_flag[0] == signal.SIGINT:
        _err(f"stopped watching; the run goes on (lora-tui watch {run_dir})")
    return code


def cmd_stop(args: argparse.Namespace) -> int:
    from lora_tui.runs.control import project_of, resolve_run, stop_run, wait_for_end
    from lora_tui.runs.follow import end_line

    run_dir = resolve_run(args.refs)
    line = stop_run(run_dir, now=args.now, by="lora-tui stop" + (" --now" if args.now else ""))
    _out(line)
    _restart_queue(project_of(run_dir))
    if "asked the" not in line or args.no_wait:
        return 0
    try:
        info = wait_for_end(run_dir)
    except KeyboardInterrupt:
        _err("stopped waiting; the run is stopping")
        return 0
    _out(end_line(info))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from lora_tui.cli_train import start_run
    from lora_tui.core import project
    from lora_tui.runs.control import resolve_run, resume_plan

    plan = resume_plan(resolve_run(args.refs))
    args.backend = args.backend or plan.backend
    args.model = args.model or plan.model
    args.max_train_steps = args.max_train_steps or plan.max_train_steps
    _out(f"resuming {plan.info.id} from {plan.state}")
    return start_run(project.load(plan.project_root), args, resume=str(plan.state), name=args.name or plan.name)


def cmd_diff(args: argparse.Namespace) -> int:
    from lora_tui.runs import diff
    from lora_tui.runs.control import resolve_run

    if len(args.refs) == 3:
        dir_a, dir_b = resolve_run(args.refs[:2]), resolve_run([args.refs[0], args.refs[2]])
    elif len(args.refs) == 2:
        dir_a, dir_b = resolve_run(args.refs[:1]), resolve_run(args.refs[1:])
    else:
        raise LoraTuiError("diff takes two runs: lora-tui diff [PROJECT] RUN_A RUN_B",
                           hint="e.g. lora-tui diff judy 20261201-0930 20261201-1415")
    result = diff.diff_runs(dir_a, dir_b)
    if args.json:
        _json(result.to_json())
    else:
        for line in diff.render(result):
            _out(line)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from lora_tui.runs import queue

    root = Path(args.project)
    if not (root / "lora-tui.toml").is_file():
        raise LoraTuiError("not a lora-tui project (no lora-tui.toml)", path=root, hint="give a project folder")
    if args.action:
        if not args.run:
            raise LoraTuiError(f"queue {args.action} needs a run id", hint=f"lora-tui queue PROJECT {args.action} ID")
        if args.action == "remove":
            _out(f"removed {queue.remove(root, args.run)} from the queue")
        else:
            position = queue.move(root, args.run, -1 if args.action == "up" else 1)
            _out(f"{args.run}: now at position {position}")
        return 0
    _restart_queue(root)
    items = queue.describe(root)
    if args.json:
        _json(items)
        return 0
    if not items:
        _out("the queue is empty")
        return 0
    for item in items:
        if item["position"] == 0:
            _out(f"now  {item['id']}  {item['state']}  step {item['step']}/{item['total_steps'] or '?'}")
        else:
            made = time.strftime("%Y-%m-%d %H:%M", time.localtime(item["created_at"])) if item.get("created_at") else ""
            _out(f"{item['position']:>3}  {item['id']}  {item['state']}  {item.get('backend') or ''}  {made}")
    drainer = "running" if queue.drainer_running(root) else "not running"
    _out(f"drainer: {drainer}")
    return 0


# -- parsers --------------------------------------------------------------------------------------
def _max_train_steps(text: str) -> int:
    """--max-train-steps, within max_train_steps' range of core.train_settings (1 to 100 million)."""
    from lora_tui.core.train_settings import range_problem

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    problem = range_problem("max_train_steps", value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def _launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("builtin", "sd-scripts"), help="override [project] backend")
    p.add_argument("--model", help="base model for this run (Diffusers folder or .safetensors/.ckpt)")
    p.add_argument("--max-train-steps", type=_max_train_steps,
                   help="a shorter run: overrides max_train_steps and epochs")
    p.add_argument("--name", help="name the run (its folder is <time>-<name>)")
    p.add_argument("--allow-download", action="store_true",
                   help="let the built-in trainer fetch a missing tokenizer or hub model (default: local files only)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--detach", action="store_true", help="start it and return at once (then: lora-tui watch)")
    how.add_argument("--queue", action="store_true", help="add it to the project's queue (runs one after another)")


def add_run_parsers(sub: Any) -> None:
    from lora_tui.cli_train import cmd_train

    p = sub.add_parser("train", help="train into runs/<id>/ under a supervisor that survives logging out")
    p.add_argument("project")
    _launch_options(p)
    p.add_argument("--resume", metavar="STATE_DIR", help="continue from a saved state (step count carries on)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list a project's runs, newest first (state, step, loss, ETA, peak GPU memory)")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("watch", help="follow a run in the terminal until it ends; exits with its status")
    p.add_argument("refs", nargs="+", metavar="RUN", help="a run folder, a project (its current run), or PROJECT RUN")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("stop", help="stop a run: after its step, saving (default), or --now")
    p.add_argument("refs", nargs="+", metavar="RUN", help="a run folder, a project (its current run), or PROJECT RUN")
    p.add_argument("--now", action="store_true", help="end it at once (nothing more is saved)")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for the run to end")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="a new run continuing from the last state a run saved")
    p.add_argument("refs", nargs="+", metavar="RUN", help="a run folder, or PROJECT RUN")
    _launch_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("diff", help="what differs between two runs: settings, data, versions, results")
    p.add_argument("refs", nargs="+", metavar="RUN", help="RUN_A RUN_B, or PROJECT RUN_A RUN_B")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("queue", help="list a project's queue, or edit it: remove|up|down ID")
    p.add_argument("project")
    p.add_argument("action", nargs="?", choices=("remove", "up", "down"))
    p.add_argument("run", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)

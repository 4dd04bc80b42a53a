"""``lora-tui`` command line: every subcommand is a thin call into core (and, later, runs).

Known errors print one line and exit non-zero; nothing prints a traceback unless
``LORA_TUI_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lora_tui import __version__
from lora_tui.cli_usage import Parser, UsageError, unknown_arguments, unknown_command, unknown_long_option
from lora_tui.core.errors import LoraTuiError, Terminated

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def cmd_new(args: argparse.Namespace) -> int:
    from lora_tui.core import scaffold

    plan = scaffold.new_project(Path(args.dir), args.name, Path(args.from_images) if args.from_images else None)
    if args.model:
        scaffold.use_model(plan, Path(args.model))
    file = scaffold.write_project(plan)
    _out(f"created {file}")
    for ds in plan.datasets:
        for sub in ds["subsets"]:
            _out(f"  subset {sub['name']}: {sub['image_dir']} × {sub['num_repeats']} repeats")
    for note in plan.notes:
        _out(f"  note: {note}")
    if args.model:
        _out(f"next: lora-tui check {args.dir}")
    else:
        _out(f"next: set [model] pretrained_model_name_or_path in {file}, then: lora-tui check {args.dir}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from lora_tui.core import scaffold

    into = Path(args.into)
    if args.legacy:
        plan = scaffold.import_legacy(Path(args.source), into, Path(args.reg) if args.reg else None, args.name)
    else:
        if args.reg:
            raise LoraTuiError("--reg only applies with --legacy", hint="add --legacy or drop --reg")
        plan = scaffold.import_dataset_toml(Path(args.source), into, args.name)
    file = scaffold.write_project(plan)
    _out(f"created {file} with {sum(len(d['subsets']) for d in plan.datasets)} subsets (no files moved)")
    for note in plan.notes:
        _out(f"  note: {note}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from lora_tui.core import lint, project

    proj = project.load(Path(args.project))
    report = lint.check_project(proj, deep=args.deep)
    code = report.exit_code(args.strict)
    if args.json:
        _json({"project": str(proj.root), "exit_code": code, "token_counter": report.token_counter,
               "errors": len(report.errors), "warnings": len(report.warnings),
               "findings": [f.to_json() for f in report.findings]})
        return code
    for finding in report.findings:
        _out(finding.line())
    _out(f"{len(report.errors)} errors, {len(report.warnings)} warnings"
         + ("" if report.token_counter == "clip" else " (caption token counts estimated: no CLIP tokenizer)"))
    return code


def cmd_config(args: argparse.Namespace) -> int:
    from lora_tui.core import builtin_models, configs, project, scan, steps, train_args

    proj = project.load(Path(args.project))
    reference = proj.model_reference and builtin_models.lookup(proj.model_reference, path=proj.file).reference
    scans = scan.scan_project(proj, read_captions=False)
    report = steps.compute(proj, scans)
    generated = configs.write(proj, report, scans)
    if reference:  # the generated args name its cache folder: a trainer given them needs it built
        builtin_models.ensure_built(reference)
    launch = configs.backend_argv(proj, generated)
    left = generated.left_out
    if args.json:
        _json({"dataset_config": str(generated.dataset_config), "args_config": str(generated.args_config),
               "steps_per_epoch": report.steps_per_epoch, "total_steps": report.total_steps,
               "epochs": report.epochs, "batches_per_epoch": report.batches_per_epoch,
               "command": generated.command, "argv": generated.argv, "steps": report.to_json(),
               "backend": proj.backend, "backend_command": train_args.shell_join(launch), "backend_argv": launch,
               "left_out": {"excluded": sorted(map(str, left.marked)),
                            "unreadable": [{"path": str(path), "reason": why}
                                           for path, why in sorted(left.unreadable.items())]}})
        return 0
    _out(f"wrote {generated.dataset_config}")
    _out(f"wrote {generated.args_config}")
    for line in left.lines():
        _out(line)
    _out("")
    _out(report.breakdown())
    _out("")
    _out(report.summary_line())
    _out("")
    if proj.backend == "sd-scripts":
        _out("launch (from your sd-scripts checkout):")
        _out(f"  {train_args.shell_join(launch)}")
        _out(f"or as a run lora-tui supervises: lora-tui train {args.project}")
    else:
        _out("launch with the built-in trainer (backend = \"builtin\"):")
        _out(f"  lora-tui train {args.project}")
        _out("or by hand, on these files:")
        _out(f"  {train_args.shell_join(launch)}")
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from lora_tui.core import project, steps

    report = steps.compute(project.load(Path(args.project)))
    if args.json:
        _json(report.to_json())
        return 0
    _out(report.breakdown())
    _out("")
    _out(report.histogram())
    _out("")
    _out(report.summary_line())
    return 0


def cmd_captions(args: argparse.Namespace) -> int:
    from lora_tui.cli_captions import run_captions

    return run_captions(args)


def cmd_open(args: argparse.Namespace) -> int:
    from lora_tui.core import project

    proj = project.load(Path(args.project))
    from lora_tui.ui.app import run_app

    return run_app(proj, theme=args.theme, image_protocol=args.image_protocol)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Pre-flight checks; the training stack is imported only here, after the environment is read."""
    from lora_tui.core import project

    proj = project.load(Path(args.project)) if args.project else None
    env = dict(os.environ)  # as the user set it: importing lora_tui.train sets HF_HUB_OFFLINE=1 (core.offline)
    try:
        from lora_tui.train.diagnostics import doctor
    except ImportError as exc:
        raise LoraTuiError(f"the training stack cannot be imported: {exc}",
                           hint="reinstall lora-tui with its dependencies (torch, diffusers, accelerate)") from None
    findings = doctor.run_checks(proj, env=env)
    code = doctor.exit_code(findings)
    if args.json:
        _json({"project": str(proj.root) if proj else None, "exit_code": code,
               "errors": sum(f.severity == doctor.ERROR for f in findings),
               "warnings": sum(f.severity == doctor.WARN for f in findings),
               "findings": [f.status_json() for f in findings]})
        return code
    for finding in findings:
        _out(finding.status_line())
    return code


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    """A tiny random SD-style model, so the whole loop can be tried on a laptop CPU."""
    from lora_tui.train.model.tiny import make_tiny_model

    dest = Path(args.dir)
    if (dest.exists() and not dest.is_dir()) or (dest.is_dir() and any(dest.iterdir())):
        raise LoraTuiError("destination exists and is not an empty folder", path=dest,
                           hint="pick a new folder name")
    if args.sdxl:
        if args.v2 or args.v_parameterization:
            raise LoraTuiError("--sdxl cannot be combined with --v2 or --v-parameterization",
                               hint="pick one family: --sdxl, or --v2 [--v-parameterization]")
        if dest.suffix in (".ckpt", ".pt", ".pth"):
            raise LoraTuiError("a tiny SDXL single file is written as .safetensors", path=dest,
                               hint="name it *.safetensors, or give a folder")
        from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

        written = make_tiny_sdxl(dest, single_file=args.single_file, seed=args.seed)
    else:
        written = make_tiny_model(dest, v2=args.v2, single_file=args.single_file, seed=args.seed,
                                  v_parameterization=args.v_parameterization)
    family = "SDXL" if args.sdxl else "SD2" if args.v2 else "SD1"
    _out(f"wrote a tiny {family}-style model: {written}")
    _out(f"train on it: lora-tui train PROJECT --model {written}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lora-tui",
        description="Prepare datasets and train Stable Diffusion LoRAs from one terminal.",
        epilog="Run `lora-tui PROJECT` to open the app on a project folder.")
    parser.add_argument("--version", action="version", version=f"lora-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("new", help="create a project (optionally around a folder of images)")
    p.add_argument("dir", help="project folder to create")
    p.add_argument("--from-images", metavar="SRC", help="use the images in SRC (or its subfolders) in place")
    p.add_argument("--name", help="project name (default: the folder name)")
    p.add_argument("--model", metavar="PATH", help="base model (file or Diffusers folder); its family (SD1/SD2/SDXL) "
                   "sets resolution, buckets and backend")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("import", help="make a project from an sd-scripts dataset TOML or legacy folders")
    p.add_argument("source", help="DATASET.toml, or TRAIN_DIR with --legacy")
    p.add_argument("--into", required=True, metavar="DIR", help="project folder to create")
    p.add_argument("--legacy", action="store_true", help="SOURCE is a folder of '<repeats>_<name>' folders")
    p.add_argument("--reg", metavar="REG_DIR", help="regularization folders (with --legacy)")
    p.add_argument("--name", help="project name (default: the folder name)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("check", help="lint the project: exit 0 clean, 2 errors, 1 warnings with --strict")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="machine-readable findings")
    p.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    p.add_argument("--deep", action="store_true", help="also decode every image (slow)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", help="write configs/ (sd-scripts format), print steps, what is left out and "
                                      "the launch command of the project's backend")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("steps", help="print the steps breakdown and bucket histogram (writes nothing)")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_steps)

    from lora_tui.cli_captions import add_captions_parser

    captions_parser = add_captions_parser(sub, cmd_captions)

    from lora_tui.cli_caption import add_caption_parser

    add_caption_parser(sub)

    from lora_tui.cli_metadata import add_metadata_parser

    add_metadata_parser(sub)

    p = sub.add_parser("open", help="open the terminal app on a project (same as `lora-tui PROJECT`)")
    p.add_argument("project")
    p.add_argument("--theme", help="lora-dark, lora-light, lora-ansi (16 colours), a Textual theme, or your own")
    p.add_argument("--image-protocol", choices=("auto", "kitty", "sixel", "halfblock", "none"),
                   help="image previews: auto asks the terminal (Kitty graphics, Sixel, else half-block"
                        " cells); env LORA_TUI_IMAGE_PROTOCOL")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("doctor", help="pre-flight check of torch, GPUs, accelerate and (with PROJECT) model, "
                                      "tokenizer, disk; exit 1 on errors")
    p.add_argument("project", nargs="?", help="also check this project's model, tokenizer, sd-scripts and disk")
    p.add_argument("--json", action="store_true", help="machine-readable findings")
    p.set_defaults(func=cmd_doctor)

    from lora_tui.cli_runs import add_run_parsers

    add_run_parsers(sub)

    from lora_tui.cli_lora import add_lora_parsers

    add_lora_parsers(sub)

    p = sub.add_parser("make-tiny-model", help="write a tiny random SD-style model to try training on a CPU")
    p.add_argument("dir")
    p.add_argument("--v2", action="store_true", help="SD2 topology (OpenCLIP-style text encoder)")
    p.add_argument("--v-parameterization", action="store_true", help="v-prediction scheduler (with --v2)")
    p.add_argument("--sdxl", action="store_true", help="SDXL topology (two text encoders, size conditioning)")
    p.add_argument("--single-file", action="store_true", help="one .safetensors (original layout) + tokenizer/")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_tiny_model)
    parser.set_defaults(command_names=frozenset(sub.choices), captions_parser=captions_parser,
                        subparsers=dict(sub.choices))
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse the command line; a typo in a command or an option is a :class:`UsageError` naming the
    closest match (``lora-tui PROJECT`` still opens the app)."""
    parser = build_parser()
    commands = parser.get_default("command_names")
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        typo = unknown_command(argv[0], argv[1:], commands)
        if typo is not None:
            raise typo
        argv = ["open", *argv]
    subparsers: dict[str, argparse.ArgumentParser] = parser.get_default("subparsers")
    if argv and argv[0] in subparsers and (typo := unknown_long_option(subparsers[argv[0]], argv[1:])):
        raise typo
    if argv and argv[0] == "captions":  # options may sit between its free-form values
        captions: argparse.ArgumentParser = parser.get_default("captions_parser")
        args, extras = captions.parse_known_intermixed_args(argv[1:])
        args.command = "captions"
        if extras:
            raise unknown_arguments(captions, extras)
        return args
    args, extras = parser.parse_known_args(argv)
    if extras:
        raise unknown_arguments(subparsers.get(args.command, parser), extras)
    return args


def exiting_quietly() -> None:
    """The command is done and the process exits next: a Ctrl-C during the interpreter's teardown
    (torch's, say) ends it at once instead of printing a KeyboardInterrupt traceback. Only for the
    real command line: a program calling main() keeps its own SIGINT handling."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
    except UsageError as exc:  # like argparse's own errors: SystemExit(2), but one line
        sys.stderr.write(f"lora-tui: error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    if not getattr(args, "func", None):
        build_parser().print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from lora_tui.cli_captions import recover_before

        recover_before(args)  # finish a caption edit a crash interrupted, before anything reads captions
        code = func(args)
        if argv_given is None:
            exiting_quietly()
        return code
    except LoraTuiError as exc:
        sys.stderr.write(f"lora-tui: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("lora-tui: interrupted\n")
        return EXIT_INTERRUPTED
    except Terminated:
        sys.stderr.write("lora-tui: terminated\n")
        return EXIT_TERMINATED
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("LORA_TUI_DEBUG"):
            raise
        sys.stderr.write(f"lora-tui: internal error: {type(exc).__name__}: {exc} "
                         "(set LORA_TUI_DEBUG=1 for the traceback and please report it)\n")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``lora-tui grid RUN``: every checkpoint × weight × prompt of a run, one labelled grid per prompt.

The parser is torch-free; the handler imports the renderer (torch, diffusers) only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LoraTuiError(f"bad --size {text!r}", hint="WIDTHxHEIGHT, e.g. 512x512") from None
    return w, h


def cmd_grid(args: argparse.Namespace) -> int:
    from lora_tui.cli_lora import _floats
    from lora_tui.runs.control import resolve_run

    run_dir = resolve_run(args.run)
    from lora_tui.train.lora_tools import grid

    def progress(index: int, ckpt: Any, weight: float) -> None:
        sys.stderr.write(f"  {ckpt.label} at weight {weight:g} done\n")

    manifest = grid.render(
        run_dir, prompts_file=Path(args.prompts) if args.prompts else None,
        weights=_floats(args.weights, "--weights") if args.weights else None, checkpoints=args.checkpoints,
        seed=args.seed, steps=args.steps, sampler=args.sampler, size=_size(args.size) if args.size else None,
        device=args.device, progress=None if args.quiet else progress)
    cells = sum(len(row) for rows in manifest["cells"].values() for row in rows)
    sys.stdout.write(f"{cells} images ({len(manifest['checkpoints'])} checkpoints × {len(manifest['weights'])} "
                     f"weights × {len(manifest['prompts'])} prompts) on {manifest['device']}\n")
    for path in manifest["grids"]:
        sys.stdout.write(f"wrote {path}\n")
    return 0


def add_grid_parser(sub: Any) -> None:
    p = sub.add_parser("grid", help="render a run's checkpoints × weights × prompts into grid/ to pick the best")
    p.add_argument("run", nargs="+", metavar="RUN", help="a run folder, a project (its newest run), or PROJECT RUN")
    p.add_argument("--prompts", metavar="FILE", help="sd-scripts prompt file (default: the run's sample_prompts)")
    p.add_argument("--weights", help="LoRA strengths, e.g. 0.6,0.8,1.0 (default 1.0)")
    p.add_argument("--checkpoints", default="all", help="all (default), last:N, or saved steps like 500,1000")
    p.add_argument("--seed", type=int, help="one seed for every cell (default: the prompt's --d, else 1234)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the prompt's --s, else 30)")
    p.add_argument("--sampler", help="sd-scripts sampler name (default: the run's sample_sampler, else ddim)")
    p.add_argument("--size", metavar="WxH", help="image size (default: the prompt's --w/--h, else 512x512)")
    p.add_argument("--device", help="cuda (default when present) or cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_grid)

"""``lora-tui lora inspect|resize|merge|bake|convert`` and ``lora-tui grid``: after training.

`inspect` stays torch-free (header parsing only); every other handler imports its torch module
inside itself, so building the parser costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LoraTuiError(f"{what} must be numbers separated by commas, not {text!r}",
                           hint="e.g. 0.6,0.8,1.0") from None


def cmd_inspect(args: argparse.Namespace) -> int:
    from lora_tui.core import lora_inspect

    report = lora_inspect.inspect(Path(args.file), top_tags=args.top_tags)
    if args.json:
        _json(report.to_json())
    else:
        for line in lora_inspect.render(report):
            _out(line)
    return 0


def _load(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from lora_tui.train.lora_tools.convert import load_as_kohya

    return load_as_kohya(path)


def cmd_resize(args: argparse.Namespace) -> int:
    from lora_tui.train.lora_tools import factors, resize
    from lora_tui.train.network.file import save_lora

    src = Path(args.file)
    method, param = (args.dynamic[0], _floats(args.dynamic[1], "--dynamic VALUE")[0]) if args.dynamic else (None, None)
    if args.dim is None and method is None:
        raise LoraTuiError("give --dim N or --dynamic METHOD VALUE", hint="e.g. --dim 32")
    dim = args.dim if args.dim is not None else 10_000  # dynamic without --dim: no cap
    suffix = f"r{dim}" if method is None else f"{method}-{param:g}"
    target = factors.output_path(src, args.out, suffix, in_place=args.in_place, force=args.force)
    state_dict, metadata = _load(src)
    modules, results = resize.resize(state_dict, dim=dim, conv_dim=args.conv_dim, method=method, param=param,
                                     device=args.device, path=src)
    dtype = factors.pick_dtype(args.save_precision, state_dict)
    meta = resize.resize_metadata(metadata, results, dim=dim, conv_dim=args.conv_dim, method=method, param=param)
    save_lora(target, factors.to_state_dict(modules, dtype), meta)
    if args.json:
        _json({"output": str(target), "modules": [r.__dict__ for r in results]})
        return 0
    if not args.quiet:
        for r in results:
            _out(r.line())
    fro = [r.fro_retained for r in results]
    _out(f"{len(results)} modules, rank {max(r.old_rank for r in results)} → "
         f"{'dynamic' if method else dim}; Frobenius energy retained: mean {sum(fro) / len(fro):.1%}, "
         f"min {min(fro):.1%}")
    _out(f"wrote {target}")
    return 0


def add_lora_parsers(sub: Any) -> None:
    """Register `lora …` (and `grid`) on the top-level subparsers."""
    lora = sub.add_parser("lora", help="inspect, resize, merge, bake or convert LoRA files")
    lsub = lora.add_subparsers(dest="lora_command", metavar="ACTION")

    p = lsub.add_parser("inspect", help="architecture, rank/alpha, modules and training facts (headers only)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--top-tags", type=int, default=10, metavar="N", help="most frequent caption tags to show")
    p.set_defaults(func=cmd_inspect)

    def output_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", metavar="PATH", help="output file (default: beside the input, named for the action)")
        p.add_argument("--force", action="store_true", help="replace an existing output file (never the input)")
        p.add_argument("--save-precision", choices=("float", "fp16", "bf16"),
                       help="dtype of the written tensors (default: the input's)")

    p = lsub.add_parser("resize", help="lower the rank by SVD (sd-scripts' resize_lora.py methods)")
    p.add_argument("file")
    p.add_argument("--dim", type=int, help="new rank (with --dynamic: the cap)")
    p.add_argument("--conv-dim", type=int, help="new rank of conv modules (default: --dim)")
    p.add_argument("--dynamic", nargs=2, metavar=("METHOD", "VALUE"),
                   help="sv_ratio|sv_fro|sv_cumulative and its target, e.g. sv_fro 0.9")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--in-place", action="store_true", help="replace the input file")
    p.add_argument("--quiet", action="store_true", help="only the summary, not every module")
    p.add_argument("--json", action="store_true")
    output_options(p)
    p.set_defaults(func=cmd_resize)

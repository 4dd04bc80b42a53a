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


def _load(path: Path, base: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    from lora_tui.train.lora_tools.convert import load_as_kohya

    return load_as_kohya(path, base)


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
    state_dict, metadata = _load(src, args.base)
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


def cmd_merge(args: argparse.Namespace) -> int:
    from lora_tui.train.lora_tools import factors, merge
    from lora_tui.train.network.file import save_lora

    paths = [Path(f) for f in args.files]
    ratios = _floats(args.ratios, "--ratios") if args.ratios else [1.0 / len(paths)] * len(paths)
    if not args.out:
        raise LoraTuiError("give --out PATH for the merged LoRA", hint="e.g. --out merged.safetensors")
    target = factors.output_path(paths[0], args.out, "merged", in_place=False, force=args.force)
    if any(target.exists() and target.resolve() == p.resolve() for p in paths):
        raise LoraTuiError("the output would overwrite an input", path=target, hint="choose another --out")
    loaded = [_load(p, args.base) for p in paths]
    modules = merge.merge([sd for sd, _ in loaded], ratios, dim=args.dim, conv_dim=args.conv_dim,
                          clamp_quantile=args.clamp_quantile, device=args.device, paths=paths,
                          metas=[m for _, m in loaded])
    dtype = factors.pick_dtype(args.save_precision, loaded[0][0])
    meta = merge.merge_metadata(paths, ratios, args.dim, [m for _, m in loaded])
    save_lora(target, factors.to_state_dict(modules, dtype), meta)
    _out(f"merged {len(paths)} LoRAs ({len(modules)} modules) at rank {args.dim}: wrote {target}")
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from lora_tui.train.lora_tools import factors, merge

    model, lora, target = Path(args.model), Path(args.lora), Path(args.out)
    if target.suffix.lower() != ".safetensors":
        raise LoraTuiError("the baked checkpoint is written as .safetensors", path=target,
                           hint="name --out *.safetensors")
    for src in (model, lora):
        if target.exists() and target.resolve() == src.resolve():
            raise LoraTuiError("the output would overwrite an input", path=target, hint="choose another --out")
    if target.exists() and not args.force:
        raise LoraTuiError("output file exists", path=target, hint="choose another --out or pass --force")
    dtype = factors.DTYPES[args.save_precision] if args.save_precision else None
    merge.bake(model, lora, args.weight, target, dtype=dtype)
    _out(f"baked {lora.name} at {args.weight:g} into {model.name}: wrote {target}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from lora_tui.train.lora_tools import convert, factors

    src = Path(args.file)
    suffix = f"{args.to}"
    if args.to == "peft":
        target = Path(args.out) if args.out else src.with_name(f"{src.stem}-peft")
        if target.exists() and (target.resolve() == src.resolve() or not args.force):
            raise LoraTuiError("output exists", path=target, hint="choose another --out or pass --force")
    else:
        target = factors.output_path(src, args.out, suffix, in_place=False, force=args.force)
    dtype = factors.DTYPES[args.save_precision] if args.save_precision else None
    source = convert.convert(src, args.to, target, dtype=dtype, base=args.base)
    _out(f"converted {source} → {args.to}: wrote {target}")
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
        p.add_argument("--base", choices=("sdxl", "sd"),
                       help="the base model family (SDXL or SD1.x/SD2.x) of a diffusers/peft file whose "
                            "metadata, names and shapes cannot tell (asked for when needed)")

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

    p = lsub.add_parser("merge", help="weighted sum of LoRAs, re-factored by SVD to one rank")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--ratios", help="one weight per file, e.g. 0.7,0.3 (default: equal)")
    p.add_argument("--dim", type=int, required=True, help="rank of the merged LoRA")
    p.add_argument("--conv-dim", type=int, help="rank of conv modules (default: --dim)")
    p.add_argument("--clamp-quantile", type=float,
                   help="clamp factors at this quantile like sd-scripts' svd_merge_lora (0.99); off by default")
    p.add_argument("--device", help="cpu (default) or cuda")
    output_options(p)
    p.set_defaults(func=cmd_merge)

    p = lsub.add_parser("bake", help="merge a LoRA into a base model: one .safetensors checkpoint for webui")
    p.add_argument("model", help="base model: Diffusers folder or single-file .safetensors/.ckpt")
    p.add_argument("lora")
    p.add_argument("--weight", type=float, default=1.0, help="LoRA strength (default 1.0)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors")
    p.add_argument("--force", action="store_true", help="replace an existing output file (never an input)")
    p.add_argument("--save-precision", choices=("float", "fp16", "bf16"), help="dtype of the checkpoint")
    p.set_defaults(func=cmd_bake)

    p = lsub.add_parser("convert", help="between kohya, diffusers and peft key styles (SD1/SD2/SDXL)")
    p.add_argument("file", help="a LoRA file, or a peft folder")
    p.add_argument("--to", required=True, choices=("kohya", "diffusers", "peft"))
    output_options(p)
    p.set_defaults(func=cmd_convert)

    from lora_tui.cli_grid import add_grid_parser

    add_grid_parser(sub)

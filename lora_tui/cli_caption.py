"""``lora-tui caption``: auto-caption a subset's images from a local model, journaled and marked for review.

Exit codes: 0 done; 3 done except for the images listed (unreadable, or a caption changed elsewhere
meanwhile); 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (what finished is written and
undoable in every case); 2 an error (one line).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def add_caption_parser(sub: Any, handler: Callable[[argparse.Namespace], int] | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "caption", help="auto-caption images from a local model (BLIP/GIT/VLM or a WD14 ONNX tagger)",
        description="Caption a project's images with a local model: a transformers captioner folder (BLIP, "
                    "BLIP-2, GIT, or a chat-style vision-language model with --prompt) or a WD14-style ONNX "
                    "tagger (model.onnx + selected_tags.csv; needs pip install 'lora-tui[tagger]'). Captions are "
                    "journaled (one `lora-tui captions PROJECT undo` takes the whole run back) and marked "
                    "needs-review. Exit 0 done, 3 some images were skipped (listed), 130/143/129 stopped by "
                    "Ctrl-C/SIGTERM/SIGHUP (what finished is kept), 2 error.")
    p.add_argument("project")
    p.add_argument("--model", required=True, metavar="PATH", help="local model folder (or the tagger's .onnx)")
    p.add_argument("--kind", choices=("auto", "vlm", "tagger"), default="auto",
                   help="what the model is (default: read from its files)")
    p.add_argument("--subset", action="append", default=[], help="only this subset (name or D.S index)")
    p.add_argument("--include-reg", action="store_true", help="also caption regularization subsets")
    p.add_argument("--images-from", metavar="FILE", help="only the images listed in FILE, one path a line (- stdin)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--missing-only", dest="mode", action="store_const", const="missing-only",
                      help="caption only images without a caption (default; existing ones are never touched)")
    mode.add_argument("--overwrite", dest="mode", action="store_const", const="overwrite",
                      help="replace the first line of existing captions")
    mode.add_argument("--append", dest="mode", action="store_const", const="append",
                      help="add the new tags existing captions lack (no duplicates)")
    p.set_defaults(mode="missing-only")
    p.add_argument("--prefix", default="", help="text put before every new caption (after the trigger word)")
    p.add_argument("--prompt", help="the question for chat-style models (or the caption's start for BLIP/GIT)")
    p.add_argument("--threshold", type=float, default=0.35, help="tagger: general tag threshold (0.35)")
    p.add_argument("--character-threshold", type=float, default=0.85, help="tagger: character tag threshold (0.85)")
    p.add_argument("--exclude", action="append", default=[], metavar="TAGS",
                   help="tagger: tags to leave out (comma-separated)")
    p.add_argument("--keep-underscores", action="store_true", help="tagger: keep booru underscores (long_hair)")
    p.add_argument("--rating", action="store_true", help="tagger: put the likeliest rating tag first")
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (8)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 …")
    p.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="captioner weights (auto: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--max-new-tokens", type=int, default=60, help="sentence captioners: caption length cap (60)")
    p.add_argument("--num-beams", type=int, default=1, help="sentence captioners: beam search width (1)")
    p.add_argument("--sample", action="store_true", help="sentence captioners: sample instead of greedy decoding")
    p.add_argument("--limit", type=int, help="caption at most this many images")
    p.add_argument("--workers", type=int, help="image loading threads (default: up to 4, one less than the "
                                                 "cores); on the CPU the model runs on the cores they leave")
    p.add_argument("--dry-run", action="store_true", help="caption one batch and print it; write nothing")
    p.add_argument("--allow-download", action="store_true", help="allow --model to be a Hugging Face hub id")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: start, caption, skip, progress, end")
    p.set_defaults(func=handler or run_caption)
    return p


def _check(args: argparse.Namespace) -> None:
    from lora_tui.core.errors import LoraTuiError

    for name in ("threshold", "character_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise LoraTuiError(f"--{name.replace('_', '-')} {value} is not between 0 and 1", hint="e.g. 0.35")
    for name in ("batch_size", "max_new_tokens", "num_beams"):
        if getattr(args, name) < 1:
            raise LoraTuiError(f"--{name.replace('_', '-')} must be at least 1")
    if args.limit is not None and args.limit < 0:
        raise LoraTuiError("--limit must not be negative")


def _only(targets: list, listing: str) -> list:
    from lora_tui.core.errors import LoraTuiError

    try:
        text = sys.stdin.read() if listing == "-" else Path(listing).read_text("utf-8")
    except OSError as exc:
        raise LoraTuiError(f"cannot read the image list: {exc.strerror or exc}", path=listing) from None
    wanted = {os.path.realpath(line.strip()) for line in text.splitlines() if line.strip()}
    return [t for t in targets if os.path.realpath(t[1].path_text) in wanted]


def open_captioner(spec: Any, args: argparse.Namespace) -> Any:
    """Load the model (the heavy imports happen here, and only here)."""
    from lora_tui.caption.loader import model_threads

    if spec.kind == "tagger":
        from lora_tui.caption.tagger import Tagger, TagSettings

        exclude = frozenset(t.strip() for item in args.exclude for t in item.split(",") if t.strip())
        settings = TagSettings(args.threshold, args.character_threshold, exclude, args.keep_underscores, args.rating)
        return Tagger(spec, settings, args.device, cpu_threads=model_threads(getattr(args, "workers", None)))
    from lora_tui.caption.vlm import GenSettings, SentenceCaptioner

    gen = GenSettings(args.max_new_tokens, args.num_beams, args.sample, args.prompt)
    return SentenceCaptioner(spec, gen, device=args.device, dtype=args.dtype,
                             cpu_threads=model_threads(getattr(args, "workers", None)))


def run_caption(args: argparse.Namespace) -> int:
    from lora_tui.caption import detect, run
    from lora_tui.caption.progress import Reporter
    from lora_tui.core import bulk, offline, project, scan

    _check(args)
    offline.enforce(allow=args.allow_download)  # lora-tui's rule, whatever HF_HUB_OFFLINE says
    proj = project.load(Path(args.project))
    spec = detect.resolve(args.model, args.kind, allow_download=args.allow_download)
    targets = bulk.select_targets(scan.scan_project(proj), args.subset, args.include_reg)
    if args.images_from:
        targets = _only(targets, args.images_from)
    targets, unreadable = bulk.readable_targets(targets)  # not images: staging and the trainer leave them out
    reporter = Reporter(json_lines=args.json)
    todo = run.plan(targets, args.mode, limit=args.batch_size if args.dry_run else args.limit)
    todo.skipped[:0] = [(r.path_text, f"{r.name}: cannot read image: "
                         + (r.unreadable or "unreadable").removeprefix(f"{r.path_text}: ")) for _, r in unreadable]
    for image, why in todo.skipped:
        reporter.skip(image, why)
    if not todo.todo:
        reporter.line(f"nothing to caption: {todo.kept} images already have a caption"
                      + (" (use --overwrite or --append to caption them anyway)" if todo.kept else ""))
        reporter.end({"written": 0, "failed": len(todo.skipped), "interrupted": False, "undo_steps": 0})
        return EXIT_PARTIAL if todo.skipped else 0
    reporter.line(f"loading {spec.family} model {spec.path} …")
    captioner = open_captioner(spec, args)
    reporter.line(f"captioning {len(todo.todo)} images with {spec.name} on {getattr(captioner, 'device', 'cpu')}"
                  + (f" ({todo.kept} already captioned, left alone)" if todo.kept else ""))
    try:
        summary = run.caption_images(proj, todo.todo, captioner, mode=args.mode, prefix=args.prefix,
                                     batch_size=args.batch_size, reporter=reporter, dry_run=args.dry_run,
                                     workers=args.workers)
    finally:
        captioner.close()
    failed = [*todo.skipped, *summary.failed]
    reporter.end({"written": summary.written, "failed": len(failed), "interrupted": summary.interrupted,
                  "stopped_by": signal.Signals(summary.signal).name if summary.interrupted else None,
                  "undo_steps": summary.undo_steps, "seconds": round(summary.seconds, 3),
                  "model_seconds": round(summary.forward_s, 3), "dry_run": args.dry_run})
    if not args.json:
        _say_done(args, summary, failed)
    if summary.interrupted:
        by = signal.Signals(summary.signal or signal.SIGINT)
        sys.stderr.write("lora-tui: interrupted\n" if by == signal.SIGINT else f"lora-tui: stopped by {by.name}\n")
        return 128 + by  # 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: as the shell and `lora-tui train` report them
    return EXIT_PARTIAL if failed else 0


def _say_done(args: argparse.Namespace, summary: Any, failed: list[tuple[str, str]]) -> None:
    out = sys.stdout.write
    if args.dry_run:
        out(f"dry run: {summary.done} images captioned, nothing written\n")
        return
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    out(f"{'interrupted: ' if summary.interrupted else ''}wrote {summary.written} captions "
        f"({rate:.1f} images/s), marked needs-review")
    if summary.written:
        out(f"; undo them all with: lora-tui captions {args.project} undo")
    out("\n")
    if summary.undo_steps > 1:
        out(f"note: the run is {summary.undo_steps} undo steps (captions were edited elsewhere meanwhile)\n")
    if failed:
        out(f"{len(failed)} images skipped:\n")
        for _, why in failed[:20]:
            out(f"  {why}\n")
        if len(failed) > 20:
            out(f"  … and {len(failed) - 20} more\n")

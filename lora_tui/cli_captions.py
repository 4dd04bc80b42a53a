"""``lora-tui captions``: bulk caption edits with a preview, journaled undo/redo, tag statistics."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPS = ("stats", "add", "remove", "rename", "replace", "trigger", "dedupe", "sort",
       "undo", "redo", "history", "forget")


def add_captions_parser(sub: Any, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "captions", help="bulk caption edits (preview first, --yes applies), undo/redo, tag stats",
        description="Operations: stats; add TAG [--front]; remove TAG; rename OLD NEW; replace FIND REPL "
                    "[--regex] [--ignore-case]; trigger WORD; dedupe; sort; undo; redo; history; forget.")
    p.add_argument("project")
    p.add_argument("op", choices=OPS)
    p.add_argument("values", nargs="*", help="the tag(s) or texts the operation takes")
    p.add_argument("--subset", action="append", default=[], help="only this subset (name or D.S index)")
    p.add_argument("--include-reg", action="store_true", help="also edit regularization subsets")
    p.add_argument("--front", action="store_true", help="add: put the tag first")
    p.add_argument("--create-missing", action="store_true",
                   help="add/trigger: also create caption files for images without one")
    p.add_argument("--regex", action="store_true", help="replace: FIND is a regular expression")
    p.add_argument("--ignore-case", action="store_true", help="replace: case-insensitive")
    p.add_argument("--top", type=int, default=50, help="stats: how many tags to list")
    p.add_argument("-y", "--yes", action="store_true", help="apply the edit (otherwise only preview)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=handler)
    return p


def _need(args: argparse.Namespace, n: int, usage: str) -> list[str]:
    from lora_tui.core.errors import LoraTuiError

    if len(args.values) != n:
        raise LoraTuiError(f"'captions {args.op}' takes {usage}", hint=f"e.g. lora-tui captions PROJECT {args.op} "
                           + " ".join(usage.split()))
    return list(args.values)


def run_captions(args: argparse.Namespace) -> int:
    from lora_tui.core import bulk, project, scan
    from lora_tui.core.journal import Journal, clear_journal

    proj = project.load(Path(args.project))
    out = sys.stdout.write
    if args.op == "forget":
        clear_journal(proj.root)
        out("caption history cleared\n")
        return 0
    journal = Journal(proj.root, [s.image_dir for s in proj.subsets if s.image_dir])
    if args.op in ("undo", "redo"):
        entry = journal.undo() if args.op == "undo" else journal.redo()
        out(f"{args.op}: {entry.label} ({len(entry.changes)} files)\n" if entry else f"nothing to {args.op}\n")
        return 0
    if args.op == "history":
        for entry in journal.history():
            out(f"{entry.id}  {len(entry.changes):>6} files  {entry.label}\n")
        nxt = journal.peek_redo()
        if nxt:
            out(f"(redo available: {nxt.label})\n")
        return 0
    targets = bulk.select_targets(scan.scan_project(proj), args.subset, args.include_reg)
    if args.op == "stats":
        counts = bulk.tag_counts(targets)
        if args.json:
            out(json.dumps(counts, ensure_ascii=False, indent=2) + "\n")
        else:
            for tag, n in list(counts.items())[: args.top]:
                out(f"{n:>7}  {tag}\n")
            out(f"{len(counts)} distinct tags in {len(targets)} images\n")
        return 0
    if args.op == "add":
        (tag,) = _need(args, 1, "TAG")
        preview = bulk.add_tag(targets, tag, position="front" if args.front else "end",
                               create_missing=args.create_missing)
    elif args.op == "remove":
        preview = bulk.remove_tag(targets, *_need(args, 1, "TAG"))
    elif args.op == "rename":
        preview = bulk.rename_tag(targets, *_need(args, 2, "OLD NEW"))
    elif args.op == "replace":
        find, repl = _need(args, 2, "FIND REPLACEMENT")
        preview = bulk.find_replace(targets, find, repl, regex=args.regex, ignore_case=args.ignore_case)
    elif args.op == "trigger":
        preview = bulk.prepend_trigger(targets, *_need(args, 1, "WORD"), create_missing=args.create_missing)
    elif args.op == "dedupe":
        preview = bulk.dedupe_tags(targets)
    else:
        preview = bulk.sort_tags(targets)
    if args.json:
        out(json.dumps({"label": preview.label, "applied": bool(args.yes and preview.changes),
                        "changes": [{"path": str(c.path), "before": c.before, "after": c.after}
                                    for c in preview.changes], "skipped": list(preview.skipped)},
                       ensure_ascii=False, indent=2) + "\n")
    else:
        out(preview.render() + "\n")
    if not preview.changes:
        return 0
    if args.yes:
        preview.apply(journal)
        if not args.json:
            out(f"applied; undo with: lora-tui captions {args.project} undo\n")
    elif not args.json:
        out("preview only: add --yes to apply\n")
    return 0

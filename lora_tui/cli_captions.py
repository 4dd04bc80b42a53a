"""``lora-tui captions``: bulk caption edits with a preview, journaled undo/redo, tag statistics.

Exit codes: 0 done; 3 done except for the captions listed as left alone (changed elsewhere since
they were read, or not writable); 75 another process is writing captions (retry); 2 an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPS = ("stats", "show", "set", "add", "remove", "rename", "replace", "trigger", "dedupe", "sort",
       "undo", "redo", "history", "forget", "clean")
EXIT_LEFT_ALONE = 3


def add_captions_parser(sub: Any, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "captions", help="bulk caption edits (preview first, --yes applies), undo/redo, tag stats",
        description="Operations: stats; show (every image's caption as sd-scripts reads it, caption files and "
                    "fine-tuning metadata alike); set IMAGE TEXT (one image's caption; in a metadata file for "
                    "fine-tuning subsets); add TAG [--front]; remove TAG; rename OLD NEW; replace FIND REPL "
                    "[--regex] [--ignore-case]; trigger WORD; dedupe; sort; undo; redo; history; forget; clean "
                    "(remove temporary files interrupted writes left behind). Exit 0 done, 3 some captions "
                    "were left alone (listed), 75 another process is writing captions, 2 error.")
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


# commands that neither read nor write captions: `open` recovers on screen, the run commands list runs
NO_CAPTIONS = frozenset({"open", "runs", "queue", "watch", "stop", "diff"})


def recover_before(args: argparse.Namespace) -> None:
    """The CLI's one recovery hook: before any command on a project, finish a caption operation
    that a crash or kill interrupted (one line on stderr says what was done).

    Never blocks (a writer that holds the lock is alive, not interrupted) and never fails the
    command: a journal problem is reported by the caption commands themselves.
    """
    from lora_tui.core.errors import LoraTuiError

    if getattr(args, "command", None) in NO_CAPTIONS or not getattr(args, "project", None):
        return  # the app recovers at start and shows it on screen; run listings read no captions
    given = Path(args.project).expanduser()
    state = (given.parent if given.name == "lora-tui.toml" else given) / ".lora-tui"
    if not ((state / "journal.db").exists() or (state / "journal.jsonl").exists()):
        return  # no caption was ever written through lora-tui: nothing can be half done
    try:
        from lora_tui.core import project
        from lora_tui.core.journal import Journal

        root = project.find_root(Path(args.project))
        if not (root / ".lora-tui").is_dir():
            return
        line = Journal(root).recover()
    except LoraTuiError:
        return
    if line:
        sys.stderr.write(f"lora-tui: {line}\n")


def _finish(outcome: Any, root: Path, out: Callable[[str], Any]) -> int:
    """Print what was left alone (one line) and pick the exit code."""
    note = outcome.report(root) if outcome is not None else None
    if note:
        out(note + "\n")
        return EXIT_LEFT_ALONE
    return 0


def run_captions(args: argparse.Namespace) -> int:
    from lora_tui.core import fsio, project
    from lora_tui.core.journal import Journal, clear_journal

    proj = project.load(Path(args.project))
    out = sys.stdout.write
    if args.op == "forget":
        clear_journal(proj.root)
        out("caption history cleared\n")
        return 0
    journal = Journal.for_project(proj)
    if args.op in ("undo", "redo"):
        outcome = journal.undo() if args.op == "undo" else journal.redo()
        if outcome is None:
            out(f"nothing to {args.op}\n")
            return 0
        out(f"{args.op}: {outcome.label} ({outcome.written} files)\n" if outcome.applied
            else f"{args.op} not done: {outcome.label}\n")
        return _finish(outcome, proj.root, out)
    if args.op == "history":
        for entry in journal.history():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.t))
            out(f"{entry.id}  {when}  {entry.files:>6} files  {entry.label}\n")
        nxt = journal.peek_redo()
        if nxt:
            out(f"(redo available: {nxt.label})\n")
        return 0
    if args.op == "clean":
        folders = {journal.tmp_dir, *(s.image_dir for s in proj.subsets if s.image_dir)}
        removed = sum(fsio.remove_leftover_tmps(folder) for folder in sorted(folders))
        out(f"removed {removed} temporary files left by interrupted writes\n")
        return 0
    if args.op == "set":
        with journal.lock.hold() if args.yes else contextlib.nullcontext():
            return _set_one(args, proj, journal, out)
    # a write holds the lock from reading the captions to the last rename, so a second writer
    # waits and then edits what the first one wrote (or gives up, naming who holds it)
    with journal.lock.hold() if args.yes and args.op != "stats" else contextlib.nullcontext():
        if args.yes:
            line = journal.recover()
            if line:
                sys.stderr.write(f"lora-tui: {line}\n")
        return _bulk(args, proj, journal, out)


def _bulk(args: argparse.Namespace, proj: Any, journal: Any, out: Callable[[str], Any]) -> int:
    from lora_tui.core import bulk, scan

    targets, unreadable = bulk.readable_targets(bulk.select_targets(scan.scan_project(proj), args.subset,
                                                                     args.include_reg))
    if unreadable:  # not images: no caption of theirs is counted, edited or created
        names = sorted(record.name for _, record in unreadable)
        sys.stderr.write(f"left out: {len(names)} file(s) that are not readable images ("
                         + ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
                         + f"); lora-tui check {args.project} says why\n")
    if args.op == "show":
        return _show(args, targets, out)
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
    outcome = preview.apply(journal) if args.yes and preview.changes else None
    if args.json:
        left = outcome.left_alone if outcome else ()
        out(json.dumps({"label": preview.label, "applied": bool(outcome and outcome.applied),
                        "written": outcome.written if outcome else 0,
                        "changes": [{"path": str(c.path), "before": c.before, "after": c.after}
                                    for c in preview.changes], "skipped": list(preview.skipped),
                        "metadata_entries": [{"image": i, "before": b, "after": a} for i, b, a in preview.entries],
                        "left_alone": [{"path": str(p), "reason": why} for p, why in left]},
                       ensure_ascii=False, indent=2) + "\n")
        return EXIT_LEFT_ALONE if left else 0
    out(preview.render() + "\n")
    if not preview.changes:
        return 0
    if outcome is None:
        out("preview only: add --yes to apply\n")
        return 0
    if outcome.applied:
        what = f" (with {len(preview.entries)} captions in metadata files)" if preview.entries else ""
        out(f"applied to {outcome.written} of {len(preview.changes)} caption files{what}; "
            f"undo with: lora-tui captions {args.project} undo\n")
    else:
        out("nothing applied\n")
    return _finish(outcome, proj.root, out)


def _show(args: argparse.Namespace, targets: list[Any], out: Callable[[str], Any]) -> int:
    """Every image's caption for review: ``path<TAB>text`` (newlines as \\n), or JSON."""
    from lora_tui.core.caption_edit import current_text

    rows = []
    for subset, record in targets:
        meta = subset.path("metadata_file") if record.meta_key is not None else None
        rows.append({"image": record.path_text, "caption": current_text(record, subset),
                     "source": str(meta or record.caption_path or "")})
    if args.json:
        out(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    else:
        for row in rows:
            out(f"{row['image']}\t{row['caption'].replace(chr(10), chr(92) + 'n')}\n")
    return 0


def _set_one(args: argparse.Namespace, proj: Any, journal: Any, out: Callable[[str], Any]) -> int:
    """``set IMAGE TEXT``: one image's caption, previewed unless --yes; undo like any edit."""
    from lora_tui.core import bulk, scan
    from lora_tui.core.caption_edit import current_text, save_caption
    from lora_tui.core.errors import LoraTuiError

    image, text = _need(args, 2, "IMAGE TEXT")
    targets = bulk.select_targets(scan.scan_project(proj), args.subset, include_reg=True)
    wanted = str(Path(image).expanduser().resolve()) if os.sep in image else None
    found = [(s, r) for s, r in targets if (r.path_text == wanted if wanted else r.name == image)]
    if not found:
        raise LoraTuiError(f"no image {image!r} in the project", path=proj.file,
                           hint="use its file name or path as lora-tui captions PROJECT show lists it")
    if len(found) > 1:
        raise LoraTuiError(f"{len(found)} images are named {image!r}", path=proj.file,
                           hint="give its path, or --subset NAME")
    subset, record = found[0]
    before = current_text(record, subset)
    where = scan.caption_target(subset, record)
    out(f"{where}\n    - {before.splitlines()[0] if before.strip() else '(empty)'}\n    + {text}\n")
    if not args.yes:
        out("preview only: add --yes to apply\n")
        return 0
    if not save_caption(journal, subset, record, text):
        out("unchanged\n")
        return 0
    out(f"saved; undo with: lora-tui captions {args.project} undo\n")
    return 0

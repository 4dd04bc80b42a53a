"""``lora-tui metadata PROJECT fix-keys``: repair fine-tuning metadata keys (preview first, --yes applies).

Exit codes as ``lora-tui captions``: 0 done (or preview), 3 some files were left alone (changed
since the preview or not writable), 75 another process is writing, 2 an error.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_metadata_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "metadata", help="fine-tuning metadata files: fix-keys (keys with extensions or absolute paths)",
        description="fix-keys rewrites metadata keys that name no file (no extension, as sd-scripts' "
                    "merge_captions_to_metadata.py writes them) to the file name with its extension; "
                    "--absolute makes every key the image's absolute path. Preview first; --yes applies "
                    "(journaled: undo with lora-tui captions PROJECT undo).")
    p.add_argument("project")
    p.add_argument("op", choices=("fix-keys",))
    p.add_argument("--absolute", action="store_true", help="write absolute image paths as keys")
    p.add_argument("-y", "--yes", action="store_true", help="apply (otherwise only preview)")
    p.set_defaults(func=run_metadata)
    return p


def run_metadata(args: argparse.Namespace) -> int:
    from lora_tui.cli_captions import _finish
    from lora_tui.core import project, scan
    from lora_tui.core.journal import Journal
    from lora_tui.core.metadata_fix import plan_fix_keys

    proj = project.load(Path(args.project))
    out: Callable[[str], Any] = sys.stdout.write
    journal = Journal.for_project(proj)
    with journal.lock.hold() if args.yes else contextlib.nullcontext():
        plan = plan_fix_keys(proj, [scan.scan_subset(s, read_captions=False) for s in proj.subsets],
                             absolute=args.absolute)
        out(plan.render() + "\n")
        if not plan.changes:
            out("nothing to fix\n")
            return 0
        if not args.yes:
            out("preview only: add --yes to apply\n")
            return 0
        outcome = plan.apply(journal)
    if outcome is not None and outcome.applied:
        out(f"rewrote {outcome.written} metadata files; undo with: lora-tui captions {args.project} undo\n")
    return _finish(outcome, proj.root, out)

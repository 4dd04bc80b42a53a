"""``accelerate launch -m lora_tui.train --dataset_config D --config_file A [sd-scripts flags]``.

Also takes ``--run_dir DIR`` (lora-tui's own flag, or env LORA_TUI_RUN_DIR): where status.json and
events.jsonl go. Known errors print one line and exit 2 before training starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lora_tui.core.errors import LoraTuiError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir = os.environ.get("LORA_TUI_RUN_DIR")
    if "--run_dir" in argv:
        i = argv.index("--run_dir")
        if i + 1 >= len(argv):
            print("lora_tui.train: --run_dir needs a folder", file=sys.stderr)
            return 2
        run_dir = argv[i + 1]
        del argv[i:i + 2]
    from lora_tui.train.args import parse_args
    from lora_tui.train.loop import train

    try:
        args = parse_args(argv)
    except LoraTuiError as exc:
        print(f"lora_tui.train: {exc}", file=sys.stderr)
        return 2
    return train(args, Path(run_dir) if run_dir else None)


if __name__ == "__main__":
    sys.exit(main())

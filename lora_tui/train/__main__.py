"""``accelerate launch -m lora_tui.train --dataset_config D --config_file A [sd-scripts flags]``.

Also takes ``--run_dir DIR`` (lora-tui's own flag, or env LORA_TUI_RUN_DIR): where status.json and
events.jsonl go; and ``--allow_download`` (or env LORA_TUI_ALLOW_DOWNLOAD=1): without it nothing is
fetched from the Hugging Face hub, whatever HF_HUB_OFFLINE says. Known errors print one line and exit 2
before training starts.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError


def catch_early_signals() -> list[int]:
    """Record SIGINT/SIGTERM from now on (importing torch and loading models take seconds, and a Ctrl-C
    there must stop the run cleanly, not print a KeyboardInterrupt traceback); the trainer takes the
    list over. A second signal of the same kind stops the process at once."""
    received: list[int] = []

    def remember(signum: int, _frame: Any) -> None:
        received.append(signum)
        signal.signal(signum, signal.SIG_DFL)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, remember)
    return received


def _refuse(message: str, run_dir: str | None) -> int:
    """A bad command line or config: one line on stderr and, with a run folder, an error event and a
    failed status (a monitor must not wait on a run that never started)."""
    print(f"lora_tui.train: {message}", file=sys.stderr)
    if run_dir:
        from lora_tui.train.loop.events import RunWriter

        try:
            writer = RunWriter(Path(run_dir))
            writer.event("error", code="config", message=message)
            writer.end("failed", message, 2, int(writer.status.get("last_step") or 0))
        except OSError:
            pass  # the message above already said what is wrong
    return 2


def main(argv: list[str] | None = None) -> int:
    early_signals = catch_early_signals()
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir = os.environ.get("LORA_TUI_RUN_DIR")
    if "--run_dir" in argv:
        i = argv.index("--run_dir")
        if i + 1 >= len(argv):
            return _refuse("--run_dir needs a folder", None)
        run_dir = argv[i + 1]
        del argv[i:i + 2]
    if "--allow_download" in argv:  # lora-tui's own flag: the hub may be used (core.offline)
        argv.remove("--allow_download")
        from lora_tui.core import offline

        offline.enforce(allow=True)
    from lora_tui.train.loop.args import parse_args
    from lora_tui.train.loop.train import train

    try:
        args = parse_args(argv)
    except LoraTuiError as exc:
        return _refuse(str(exc), run_dir)
    return train(args, Path(run_dir) if run_dir else None, early_signals=early_signals)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m lora_tui.caption PROJECT ...``: the same as ``lora-tui caption PROJECT ...`` (the TUI runs this)."""

from __future__ import annotations

import sys

from lora_tui.cli import exiting_quietly, main

if __name__ == "__main__":
    code = main(["caption", *sys.argv[1:]])
    exiting_quietly()
    raise SystemExit(code)

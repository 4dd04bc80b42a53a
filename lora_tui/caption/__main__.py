"""``python -m lora_tui.caption PROJECT ...``: the same as ``lora-tui caption PROJECT ...`` (the TUI runs this)."""

from __future__ import annotations

import sys

from lora_tui.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["caption", *sys.argv[1:]]))

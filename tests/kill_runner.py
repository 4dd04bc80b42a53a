"""Run ``lora-tui ARGS`` and have the kernel kill it (SIGKILL) at a chosen point: scaffolding for
the kill tests, so a kill lands inside the write path every time rather than during start-up.

    python -m tests.kill_runner CALLS ARGS...     die at the CALLS-th file system call of the
                                                   process (os.open/read/write/replace/link/unlink/fsync)
    python -m tests.kill_runner tSECONDS ARGS...   die after SECONDS, wherever it is (SQLite included)

SIGKILL runs nothing afterwards: no ``finally``, no ``atexit``, no flush; exactly a kill -9.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

CALLS = ("open", "read", "write", "replace", "link", "unlink", "fsync")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    point, args = sys.argv[1], sys.argv[2:]
    if point.startswith("t"):
        timer = threading.Timer(float(point[1:]), _die)
        timer.daemon = True
        timer.start()
    else:
        left = [int(point)]
        for name in CALLS:
            real = getattr(os, name)

            def counted(*a, _real=real, **kw):
                left[0] -= 1
                if left[0] == 0:
                    _die()
                return _real(*a, **kw)

            setattr(os, name, counted)
    from lora_tui.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())

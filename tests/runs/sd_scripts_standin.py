"""A stand-in for `accelerate launch train_network.py ...` that replays a real sd-scripts log.

Supervisor tests need a process that prints what sd-scripts prints, takes its time between steps,
exits the way it exits and dies the way it dies on Ctrl-C, in seconds and without torch. This script
writes a fixture's bytes (stdout and stderr of a real run, captured into one file) to its **stdout**,
unchanged, sleeping `--step-seconds` before each bar draw that advances the step counter, then exits
with the fixture's exit code (tests/runs/fixtures/manifest.json) or `--exit-code`.

    python sd_scripts_standin.py FIXTURE [--step-seconds 0.05] [--exit-code N] [--nan-at-step K]
                                 [-- any sd-scripts / accelerate arguments, ignored]

`--nan-at-step K` rewrites `avr_loss=` to `nan` from step K on, the way a real run shows it: the
first draw of counter K still shows step K-1's average (tqdm's update() draw), the draws after it nan.

On SIGINT it does what real sd-scripts under `accelerate launch` does when the terminal (or a
supervisor's killpg) interrupts the process group (fixture sd_scripts_sigint_mid_training.log):
accelerate's launcher and the trainer both print a KeyboardInterrupt traceback, nothing is saved, and
the process dies of SIGINT (returncode -2; 130 in a shell). The tracebacks written are the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SIGINT_FIXTURE = FIXTURES / "sd_scripts_sigint_mid_training.log"
_DRAW = re.compile(rb"\rsteps:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/\d+[^\]\r\n]*\]")
_AVR = re.compile(rb"avr_loss=[^\],\r\n]*")


def fixture_exit_code(fixture: Path) -> int:
    """The exit code the real run had (from the fixtures' manifest.json); 0 when not listed."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest.get(fixture.name)
    return int(entry["exit_code"]) if entry else 0


def segments(data: bytes, nan_at_step: int | None = None) -> list[tuple[bool, bytes]]:
    """Cut the log before each bar draw that advances the step counter: [(sleep_first, bytes), ...].

    With nan_at_step, draws from that step on show `avr_loss=nan`, except the first draw of that step,
    which in a real run still carries the previous step's postfix.
    """
    out: list[tuple[bool, bytes]] = []
    buf = bytearray()
    pos, last, sleep_first, first_of_k_seen = 0, 0, False, False
    for m in _DRAW.finditer(data):
        counter = int(m.group(1))
        draw = m.group(0)
        if nan_at_step is not None and counter >= nan_at_step:
            if counter == nan_at_step and not first_of_k_seen:
                first_of_k_seen = True
            else:
                draw = _AVR.sub(b"avr_loss=nan", draw)
        buf += data[pos:m.start()]
        if counter > last:
            out.append((sleep_first, bytes(buf)))
            buf = bytearray()
            sleep_first, last = True, counter
        buf += draw
        pos = m.end()
    buf += data[pos:]
    out.append((sleep_first, bytes(buf)))
    return out


def interrupted_tail() -> bytes:
    """What real sd-scripts printed after SIGINT: from the first 'Traceback' to the end of that log."""
    data = SIGINT_FIXTURE.read_bytes()
    return data[data.index(b"Traceback (most recent call last):"):]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture", type=Path)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--exit-code", type=int, default=None)
    parser.add_argument("--nan-at-step", type=int, default=None)
    args, _ignored = parser.parse_known_args(argv)
    data = args.fixture.read_bytes()
    out = sys.stdout.buffer
    try:
        for advances, chunk in segments(data, args.nan_at_step):
            if advances:
                time.sleep(args.step_seconds)
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        out.write(interrupted_tail())
        out.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # die of SIGINT, like the real launcher
        return 130  # not reached
    return args.exit_code if args.exit_code is not None else fixture_exit_code(args.fixture)


if __name__ == "__main__":
    # Like real sd-scripts, SIGINT is left as inherited: started with SIGINT ignored (a background job of a
    # non-interactive shell), neither reacts to it, and a supervisor test that forgets to reset it fails.
    sys.exit(main())

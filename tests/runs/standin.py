"""A fake sd-scripts checkout and a fake `accelerate`, for supervisor tests that must run in seconds.

`install_fake_sd_scripts(tmp_path, fixture)` returns `(checkout_dir, PATH)`. Launch exactly as for a
real checkout: `accelerate launch --num_cpu_threads_per_process 1 train_network.py --config_file X`
with cwd=checkout_dir and PATH in the environment. The fake `accelerate` (a shell script) skips the
launch options and runs the first `*.py` argument with this interpreter (sys.executable), as the real
one does; the checkout's `train_network.py` then becomes tests/runs/sd_scripts_standin.py replaying
the fixture (all output on stdout), so a wrong cwd fails like a real one would ("can't open file").
Both steps exec, so the pid the supervisor started is the replaying process and gets its signals.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "sd_scripts_standin.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_path(fixture: str | Path) -> Path:
    """A fixture given by file name (in tests/runs/fixtures) or by path."""
    path = Path(fixture)
    return path if path.is_absolute() or path.exists() else FIXTURES / path


def install_fake_sd_scripts(tmp_path: Path, fixture: str | Path, *, step_seconds: float = 0.05,
                            exit_code: int | None = None, nan_at_step: int | None = None) -> tuple[Path, str]:
    """Write `tmp_path/sd-scripts/train_network.py` and `tmp_path/fake-bin/accelerate`; see the module doc."""
    checkout = tmp_path / "sd-scripts"
    bin_dir = tmp_path / "fake-bin"
    checkout.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    args = [str(fixture_path(fixture)), "--step-seconds", str(step_seconds)]
    if exit_code is not None:
        args += ["--exit-code", str(exit_code)]
    if nan_at_step is not None:
        args += ["--nan-at-step", str(nan_at_step)]
    (checkout / "train_network.py").write_text(
        '"""Fake sd-scripts train_network.py: replays a real run\'s log (tests/runs/sd_scripts_standin.py)."""\n'
        "import os\nimport sys\n\n"
        f"STANDIN = {str(STANDIN)!r}\nARGS = {args!r}\n"
        'os.execv(sys.executable, [sys.executable, STANDIN, *ARGS, "--", *sys.argv[1:]])\n',
        encoding="utf-8")
    accelerate = bin_dir / "accelerate"
    accelerate.write_text(
        "#!/bin/sh\n"
        "# Fake `accelerate launch [options] SCRIPT.py [script args]`: runs SCRIPT.py with the test's python.\n"
        '[ "$1" = launch ] || { echo "fake accelerate: only \'launch\' is supported" >&2; exit 2; }\n'
        "shift\n"
        'while [ $# -gt 0 ]; do case "$1" in *.py) break ;; *) shift ;; esac; done\n'
        '[ $# -gt 0 ] || { echo "fake accelerate: no training script given" >&2; exit 2; }\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n',
        encoding="utf-8")
    accelerate.chmod(0o755)
    return checkout, f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

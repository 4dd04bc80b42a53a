"""Building the built-in models (``lora-tui:tiny-sd15``) into the user's cache, once.

``core.builtin_models`` knows the names and where each lives; this is the torch half that makes one.
The model is written into a temporary folder beside its final place, stamped last, then renamed into
place: a rename is atomic, so a reader sees no folder or a complete one, and when two processes build
at once the second rename fails, that process drops its copy and uses the first (the weights come
from a fixed seed, so both copies were the same bytes anyway).

``python -m lora_tui.train.model.builtin NAME`` builds one and prints its folder (what
``core.builtin_models.ensure_built`` runs from torch-free processes).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from lora_tui.core import builtin_models
from lora_tui.core.builtin_models import STAMP, BuiltinModel
from lora_tui.core.errors import LoraTuiError, ModelError


def build(model: BuiltinModel, env: Mapping[str, str] | None = None) -> Path:
    """The model's folder; built now (a few seconds) unless it already is."""
    final = model.path(env)
    if model.is_built(env):
        return final
    from lora_tui.train.model.tiny import make_tiny_model

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the model is an ordinary cache folder
    except OSError as exc:
        raise ModelError(f"cannot create the model cache folder: {exc.strerror or exc}", path=final.parent,
                         hint="make it writable, or set XDG_CACHE_HOME to a writable folder") from None
    try:
        make_tiny_model(tmp, v2=model.v2, seed=model.seed)
        (tmp / STAMP).write_text(json.dumps(model.stamp(), indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, final, model, env)
    except OSError as exc:
        raise ModelError(f"cannot write {model.reference}: {exc.strerror or exc}", path=final.parent,
                         hint="check free space and that the cache folder is writable") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename won
    return final


def _move_into_place(tmp: Path, final: Path, model: BuiltinModel, env: Mapping[str, str] | None) -> None:
    try:
        os.rename(tmp, final)
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if model.is_built(env):
        return  # another process finished first: its copy is as good as ours
    # A folder without the stamp was not made by a build (builds appear only by rename): set it aside.
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".broken", dir=final.parent))
    os.rename(final, aside / "old")
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not model.is_built(env):
            raise


def local_model(raw: str, say: Callable[[str], object] | None = None,
                env: Mapping[str, str] | None = None) -> str:
    """A model value as the trainer loads it: paths unchanged, a ``lora-tui:`` reference as its folder,
    built first if this is its first use (``say`` hears about that: it takes a few seconds)."""
    if not builtin_models.is_reference(raw):
        return raw
    model = builtin_models.lookup(raw)
    if not model.is_built(env) and say is not None:
        say(f"building {model.reference} (first use) into {model.path(env)}")
    return str(build(model, env))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: python -m lora_tui.train.model.builtin NAME  (known: {builtin_models.known_names()})",
              file=sys.stderr)
        return 2
    try:
        print(build(builtin_models.lookup(args[0])))
    except LoraTuiError as exc:
        print(f"lora-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""kill -9 at random points of bulk edits, undos and redos: nothing is ever half done after the next
command, history tells the truth, and no temporary file of ours is left anywhere."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.core.fsio import tmp_owner
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[1]
FILES = 60
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "LORA_TUI_LOCK_WAIT": "10"}
LABEL = re.compile(r"add tag '(T\d+)' \(end\)$")


def lora(*args: str, killer: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tests.kill_runner", killer, *args] if killer else \
        [sys.executable, "-m", "lora_tui", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)


def applied_tags(project: Path) -> tuple[list[str], str]:
    """What history says is applied (oldest first), from the next command a user would run; and
    that command's stderr (where recovery reports)."""
    proc = lora("captions", str(project), "history")
    assert proc.returncode == 0, proc.stderr
    tags = []
    for line in proc.stdout.splitlines():
        match = LABEL.search(line)
        if match and not line.startswith("(redo"):
            tags.append(match.group(1))
    return tags, proc.stderr


def our_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if tmp_owner(p.name) is not None]


@pytest.mark.slow
def test_kill_9_at_random_points_never_leaves_a_caption_half_done(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "dog"
    base = {i: f"sks dog, photo {i}" for i in range(FILES)}
    write_images(folder, [(8, 8)] * FILES, captions={i: t + "\n" for i, t in base.items()})
    project = write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "data/dog"}]}])
    rng = random.Random(20261201)
    kills = recovered = 0
    next_tag = 0
    for _ in range(200):
        if kills >= 55:
            break
        tags, _ = applied_tags(project)
        op = rng.choice(["add", "add", "undo", "redo"])
        args = ["captions", str(project), op]
        if op == "add":
            args += [f"T{next_tag}", "--yes"]
            next_tag += 1
        killer = str(rng.randint(1, 7 * FILES)) if rng.random() < 0.85 else f"t{rng.uniform(0.15, 0.6):.3f}"
        proc = lora(*args, killer=killer)
        assert "Traceback" not in proc.stderr, proc.stderr
        kills += proc.returncode == -9
        after, note = applied_tags(project)  # the next command: recovers, then lists
        recovered += "recovered an interrupted" in note
        assert "error" not in note, note
        # history is true: every caption holds exactly the tags history lists, in that order
        for i, text in base.items():
            assert (folder / f"img{i:04d}.txt").read_text() == ", ".join([text, *after]) + "\n", (op, killer, note)
        assert not our_temporaries(tmp_path), (op, killer)
        assert after in (tags, tags[:-1], [*tags, f"T{next_tag - 1}"]) or op == "redo", (tags, after)
    assert kills >= 50
    assert recovered >= 5  # some kills landed between the first and the last rename, and were finished

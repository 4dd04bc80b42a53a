"""Two processes writing review marks at once (the app marking images reviewed while a captioner adds
"needs-review"): no mark either of them set is lost, and a writer killed mid-way leaves a readable file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lora_tui.core.review import NEEDS_REVIEW, REVIEW_FILE, ReviewMarks

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from pathlib import Path
from lora_tui.core.review import ReviewMarks
root, tag, mark, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
marks = ReviewMarks(root)
print("ready", flush=True)
for i in range(n):
    marks.set([root / f"{tag}{i}.png"], mark, True)
    print(i, flush=True)
"""


def writer(root: Path, tag: str, mark: str, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), tag, mark, str(n)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_setting_marks_at_once_keep_every_mark(tmp_path: Path) -> None:
    app, captioner = writer(tmp_path, "a", "reviewed", 150), writer(tmp_path, "b", NEEDS_REVIEW, 150)
    assert app.wait(120) == 0 and captioner.wait(120) == 0
    marks = ReviewMarks(tmp_path)
    assert len(marks.with_mark("reviewed")) == 150 and len(marks.with_mark(NEEDS_REVIEW)) == 150


def test_a_marks_writer_killed_midway_leaves_a_readable_file_and_the_others_marks(tmp_path: Path) -> None:
    victim, survivor = writer(tmp_path, "a", "flagged", 10_000), writer(tmp_path, "b", NEEDS_REVIEW, 100)
    assert victim.stdout is not None
    for _ in range(20):  # let it get going, then kill it wherever it is
        victim.stdout.readline()
    time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert survivor.wait(120) == 0  # the lock died with its holder: no stale lock blocks the survivor
    data = json.loads((tmp_path / ".lora-tui" / REVIEW_FILE).read_text("utf-8"))
    assert sum(1 for marks in data["images"].values() if NEEDS_REVIEW in marks) == 100
    assert sum(1 for marks in data["images"].values() if "flagged" in marks) >= 20


def test_toggle_flips_the_mark_as_it_is_on_disk_not_as_this_process_last_saw_it(tmp_path: Path) -> None:
    app = ReviewMarks(tmp_path)
    ReviewMarks(tmp_path).set([tmp_path / "a.png"], "flagged", True)  # another process, just now
    assert app.toggle(tmp_path / "a.png", "flagged") is False
    assert not ReviewMarks(tmp_path).has("a.png", "flagged")


def test_a_marks_file_written_with_indentation_by_an_older_version_still_reads(tmp_path: Path) -> None:
    (tmp_path / ".lora-tui").mkdir()
    (tmp_path / ".lora-tui" / REVIEW_FILE).write_text(
        json.dumps({"version": 1, "images": {"a.png": ["reviewed"]}}, indent=1), "utf-8")
    marks = ReviewMarks(tmp_path)
    marks.set([tmp_path / "b.png"], "flagged", True)
    again = ReviewMarks(tmp_path)
    assert again.has("a.png", "reviewed") and again.has("b.png", "flagged")

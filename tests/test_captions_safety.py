"""Caption writes as users make them: two at once, an editor saving meanwhile, leftovers, exit codes.

Every test drives ``python -m lora_tui`` as a subprocess, as a shell would.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_tui.core.writelock import WriteLock
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("LORA_TUI_DEBUG", None)
    return env


def start(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lora_tui", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env(**env))


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tui", *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(**env), timeout=120)


def make_project(root: Path, n: int) -> Path:
    write_images(root / "data" / "dog", [(8, 8)] * n, captions={i: f"sks dog, photo {i}\n" for i in range(n)})
    return write_project(root, [{"resolution": 512, "subsets": [{"image_dir": "data/dog"}]}])


def captions(project: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((project / "data" / "dog").glob("*.txt"))}


def test_two_bulk_edits_at_once_both_land_or_the_second_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path, 300)
    for n in range(5):
        first = start("captions", str(project), "add", f"A{n}", "--yes")
        second = start("captions", str(project), "add", f"B{n}", "--yes")
        codes = first.wait(120), second.wait(120)
        for proc in (first, second):
            assert "Traceback" not in proc.stderr.read()
        assert set(codes) <= {0, 75}, codes
        for name, text in captions(project).items():
            tags = text.rstrip("\n").split(", ")
            assert (f"A{n}" in tags) == (codes[0] == 0), (name, text, codes)
            assert (f"B{n}" in tags) == (codes[1] == 0), (name, text, codes)
    history = run("captions", str(project), "history").stdout
    assert history.count("300 files") == sum(1 for line in history.splitlines() if "add tag" in line)


def test_a_second_writer_gives_up_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    project = make_project(tmp_path, 3)
    holder = WriteLock(project / ".lora-tui", command="lora-tui captions judy add A --yes")
    with holder.hold(0.0):
        t0 = time.monotonic()
        proc = run("captions", str(project), "add", "B", "--yes", LORA_TUI_LOCK_WAIT="0.5")
        waited = time.monotonic() - t0
    assert proc.returncode == 75 and waited >= 0.5
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("lora-tui: error: ")
    assert f"captions are being written by `lora-tui captions judy add A --yes` (pid {os.getpid()}) since " in lines[0]
    assert all("B" not in text for text in captions(project).values())


def test_outside_edits_during_a_bulk_edit_survive_byte_for_byte_and_are_reported(tmp_path: Path) -> None:
    """An editor saving captions while ``captions add`` runs: its saves land after the bulk edit read
    the files (the temporaries exist) and before or after each rename; none may be overwritten."""
    project = make_project(tmp_path, 2000)
    names = sorted(captions(project))
    proc = start("captions", str(project), "add", "NEW", "--yes", "--json")
    tmp_dir = project / ".lora-tui" / "tmp"
    deadline = time.monotonic() + 60
    while not (tmp_dir.is_dir() and any(tmp_dir.iterdir())):  # the edit has read everything
        assert proc.poll() is None and time.monotonic() < deadline, "the bulk edit ended before it wrote"
        time.sleep(0.001)
    rng = random.Random(9)
    theirs: dict[str, bytes] = {}
    for k, name in enumerate(reversed(names[-60:])):  # the last files the bulk edit will reach
        path = project / "data" / "dog" / name
        data = f"saved in an editor {k} é\r\n".encode()
        if rng.random() < 0.5:
            path.write_bytes(data)  # in place (vim :set backupcopy=yes)
        else:
            swp = path.with_name("." + name + ".swp")
            swp.write_bytes(data)
            os.replace(swp, path)  # write-and-rename (most editors)
        theirs[name] = data
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    report = json.loads(out)
    left = {Path(item["path"]).name for item in report["left_alone"]}
    assert left and left <= set(theirs)
    assert {item["reason"] for item in report["left_alone"]} == {"changed elsewhere"}
    for name, data in theirs.items():
        assert (project / "data" / "dog" / name).read_bytes() == data  # byte for byte, reported or not
    assert report["written"] == 2000 - len(left)
    undo = run("captions", str(project), "undo")
    assert f"({2000 - len(left)} files)" in undo.stdout
    for name, data in theirs.items():
        assert (project / "data" / "dog" / name).read_bytes() == data  # undo leaves them alone too


def test_a_waiting_bulk_edit_reads_the_captions_once_it_has_the_lock(tmp_path: Path) -> None:
    project = make_project(tmp_path, 3)
    holder = WriteLock(project / ".lora-tui", command="test")
    with holder.hold(0.0):
        proc = start("captions", str(project), "add", "x", "--yes", LORA_TUI_LOCK_WAIT="30")
        time.sleep(1.0)  # it is waiting now; a hand edit lands meanwhile
        (project / "data" / "dog" / "img0001.txt").write_text("hand edited\n")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "applied to 3 of 3" in out
    assert captions(project)["img0001.txt"] == "hand edited, x\n"  # the edit applies on top, nothing lost


def test_check_reports_leftover_temporaries_and_clean_removes_only_ours(tmp_path: Path) -> None:
    project = make_project(tmp_path, 2)
    folder = project / "data" / "dog"
    gone = subprocess.Popen(["true"])
    gone.wait()
    ours = [folder / f".img0000.txt.lora-tui-tmp-{gone.pid}-0badf00d", folder / f".img0001.txt.{gone.pid}.12345678.tmp"]
    theirs = folder / ".img0000.txt.swp"
    for path in [*ours, theirs]:
        path.write_text("x")
    check = run("check", str(project))
    assert "2 temporary files left by interrupted writes" in check.stdout
    assert f"lora-tui captions {project} clean" in check.stdout
    clean = run("captions", str(project), "clean")
    assert clean.returncode == 0 and "removed 2 temporary files" in clean.stdout
    assert not any(p.exists() for p in ours) and theirs.exists()
    assert "temporary files" not in run("check", str(project)).stdout


@pytest.mark.parametrize("op", ["undo", "redo", "history", "forget"])
def test_journal_commands_on_a_fresh_project_say_so(tmp_path: Path, op: str) -> None:
    project = make_project(tmp_path, 1)
    proc = run("captions", str(project), op)
    assert proc.returncode == 0 and proc.stderr == ""
    if op in ("undo", "redo"):
        assert proc.stdout == f"nothing to {op}\n"

"""Interrupted operations: the next start finishes or drops them file by file, and history stays true.

Interruptions are simulated in-process at an exact rename; tests/test_captions_kill.py kills real
processes with SIGKILL.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lora_tui.core import swap
from lora_tui.core.journal import Change, Journal
from lora_tui.core.writelock import WriteLock
from tests.core.test_journal import our_temporaries
from tests.helpers import write_caption_files


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs (not even the journal's 'done')."""


def interrupt_after(monkeypatch: pytest.MonkeyPatch, renames: int) -> None:
    """Let ``renames`` replacements happen, then 'kill' the process at the next one."""
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        if calls["n"] == renames:
            raise Killed
        calls["n"] += 1
        return real(src, dst)

    monkeypatch.setattr(swap.os, "replace", replace)


def _edit(paths: list[Path]) -> list[Change]:
    return [Change(p, p.read_text(), p.read_text().replace("dog", "cat")) for p in paths]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_an_edit_interrupted_midway_is_finished_at_the_next_start(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_caption_files(tmp_path, 6)
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Killed):
        Journal(tmp_path).apply("dog → cat", _edit(paths))
    monkeypatch.undo()
    assert sum("cat" in p.read_text() for p in paths) == 3
    journal = Journal(tmp_path)
    assert journal.interrupted and not journal.can_undo
    assert journal.recover() == "recovered an interrupted edit 'dog → cat': 6 captions finished"
    assert all("cat" in p.read_text() for p in paths)
    assert [e.label for e in journal.history()] == ["dog → cat"] and journal.peek_undo().files == 6
    journal.undo()
    assert [p.read_text() for p in paths] == [f"tag{i}, dog\n" for i in range(6)]
    assert journal.recover() is None  # nothing left to do


def test_an_edit_interrupted_before_its_first_rename_is_dropped(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_caption_files(tmp_path, 4)
    interrupt_after(monkeypatch, 0)
    with pytest.raises(Killed):
        Journal(tmp_path).apply("dog → cat", _edit(paths))
    monkeypatch.undo()
    journal = Journal(tmp_path)
    assert journal.recover() == "dropped an interrupted edit 'dog → cat' (no caption had changed yet)"
    assert [p.read_text() for p in paths] == [f"tag{i}, dog\n" for i in range(4)]
    assert not journal.can_undo and not journal.interrupted


def test_an_interrupted_undo_is_finished_and_history_says_undone(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_caption_files(tmp_path, 6)
    Journal(tmp_path).apply("dog → cat", _edit(paths))
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Killed):
        Journal(tmp_path).undo()
    monkeypatch.undo()
    journal = Journal(tmp_path)
    assert journal.recover() == "recovered an interrupted undo of 'dog → cat': 6 captions finished"
    assert [p.read_text() for p in paths] == [f"tag{i}, dog\n" for i in range(6)]
    assert not journal.can_undo and journal.peek_redo().label == "dog → cat"
    journal.redo()  # and the next operation works as if nothing had happened
    assert all("cat" in p.read_text() for p in paths)


def test_recovery_leaves_a_caption_changed_meanwhile_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_caption_files(tmp_path, 4)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Killed):
        Journal(tmp_path).apply("dog → cat", _edit(paths))
    monkeypatch.undo()
    paths[3].write_text("edited in vim\n")  # not yet written by the edit, then changed by hand
    line = Journal(tmp_path).recover()
    assert line == ("recovered an interrupted edit 'dog → cat': 3 captions finished; "
                    "1 caption changed elsewhere was left alone: 3.txt")
    assert paths[3].read_text() == "edited in vim\n"
    journal = Journal(tmp_path)
    assert journal.peek_undo().files == 3
    journal.undo()
    assert paths[3].read_text() == "edited in vim\n" and paths[0].read_text() == "tag0, dog\n"


def test_recovery_removes_leftover_temporaries_of_ours_and_nothing_else(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_caption_files(tmp_path, 3)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Killed):
        Journal(tmp_path).apply("dog → cat", _edit(paths))
    monkeypatch.undo()
    gone = dead_pid()
    batch = tmp_path / ".lora-tui" / "tmp" / f".batch.lora-tui-tmp-{gone}-00ff00ff"
    batch.mkdir(parents=True)
    ours = [tmp_path / f".0.txt.lora-tui-tmp-{gone}-0123abcd", tmp_path / f".1.txt.{gone}.89abcdef.tmp",
            batch / f".2.1.txt.lora-tui-tmp-{gone}-00ff00ff"]
    theirs = [tmp_path / ".notes.txt.swp", tmp_path / "draft.lora-tui-tmp-1-0123abcd",
              tmp_path / f".0.txt.lora-tui-tmp-{gone}-xyz"]
    for path in ours + theirs:
        path.write_text("x")
    line = Journal(tmp_path).recover()
    assert line.endswith("; 3 temporary files removed")
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs) and not batch.exists()


def test_an_operation_whose_writer_is_alive_is_not_touched(tmp_path: Path) -> None:
    paths = write_caption_files(tmp_path, 2)
    journal = Journal(tmp_path)
    holder = WriteLock(tmp_path / ".lora-tui", command="a bulk edit in progress")
    with holder.hold(0.0):  # another writer (its own open file: it excludes us like another process)
        journal.store.begin("x", "edit", None, "in flight", 0.0, [("0.txt", None, None)], {})
        assert journal.recover() is None
    assert Journal(tmp_path).interrupted and paths[0].read_text() == "tag0, dog\n"


def test_an_old_journal_is_migrated_with_its_undo_and_redo(tmp_path: Path) -> None:
    paths = write_caption_files(tmp_path, 2)
    state = tmp_path / ".lora-tui"
    state.mkdir()
    records = [
        {"kind": "edit", "id": "e1", "t": 1.0, "label": "one",
         "changes": [{"path": "0.txt", "before": "was\n", "after": "tag0, dog\n"}]},
        {"kind": "edit", "id": "e2", "t": 2.0, "label": "two",
         "changes": [{"path": "1.txt", "before": "tag1, dog\n", "after": "tag1, cat\n"}]},
        {"kind": "undo", "id": "e2", "t": 3.0},
    ]
    (state / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    gone = dead_pid()
    litter = [tmp_path / f".{i}.txt.{gone}.0000beef.tmp" for i in range(3)]  # what 0.1 left behind
    for path in litter:
        path.write_text("half")
    journal = Journal(tmp_path)
    assert journal.recover() == (f"moved the caption history to {state / 'journal.db'} (2 edits); "
                                 "3 temporary files removed")
    assert not (state / "journal.jsonl").exists() and not any(p.exists() for p in litter)
    assert [e.label for e in journal.history()] == ["one"] and journal.peek_redo().label == "two"
    journal.redo()
    assert paths[1].read_text() == "tag1, cat\n"
    journal.undo()
    journal.undo()
    assert [p.read_text() for p in paths] == ["was\n", "tag1, dog\n"]
    assert not our_temporaries(tmp_path)

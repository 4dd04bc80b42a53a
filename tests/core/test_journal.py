"""The journal: edits, undo and redo that survive a restart; failures leave files and history consistent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_tui.core import fsio
from lora_tui.core.errors import JournalError
from lora_tui.core.fsio import WriteError
from lora_tui.core.journal import Change, Journal
from tests.helpers import write_caption_files


def _files(tmp_path: Path, n: int = 3) -> list[Path]:
    return write_caption_files(tmp_path, n)


def _edit(paths: list[Path]) -> list[Change]:
    return [Change(p, p.read_text(), p.read_text().replace("dog", "cat")) for p in paths]


def test_undo_and_redo_survive_a_restart(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    Journal(tmp_path).apply("dog → cat", _edit(paths))
    assert paths[0].read_text() == "tag0, cat\n"
    reopened = Journal(tmp_path)
    assert reopened.peek_undo().label == "dog → cat"
    reopened.undo()
    assert paths[0].read_text() == "tag0, dog\n"
    again = Journal(tmp_path)
    assert again.can_redo and not again.can_undo
    again.redo()
    assert all("cat" in p.read_text() for p in paths)


def test_a_new_edit_clears_redo(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    j = Journal(tmp_path)
    j.apply("one", _edit(paths[:1]))
    j.undo()
    j.apply("two", _edit(paths[1:2]))
    assert not Journal(tmp_path).can_redo


def test_undo_refuses_to_overwrite_an_outside_change(tmp_path: Path) -> None:
    paths = _files(tmp_path, 1)
    j = Journal(tmp_path)
    j.apply("edit", _edit(paths))
    paths[0].write_text("hand edited\n")
    with pytest.raises(JournalError, match="changed outside lora-tui"):
        j.undo()
    assert paths[0].read_text() == "hand edited\n"
    assert Journal(tmp_path).can_undo  # history unchanged


def test_stale_preview_is_refused(tmp_path: Path) -> None:
    paths = _files(tmp_path, 1)
    changes = _edit(paths)
    paths[0].write_text("changed meanwhile\n")
    with pytest.raises(JournalError, match="since the preview"):
        Journal(tmp_path).apply("edit", changes)


def test_read_only_caption_is_refused_and_nothing_is_written(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path)
    changes = _edit(paths)
    paths[2].chmod(0o444)
    real = os.access  # root can write anything: answer as a normal user's access() would
    monkeypatch.setattr(fsio.os, "access", lambda p, m: not (Path(p) == paths[2] and m == os.W_OK) and real(p, m))
    with pytest.raises(WriteError, match="read-only") as err:
        Journal(tmp_path).apply("edit", changes)
    monkeypatch.undo()
    assert "chmod u+w" in str(err.value)
    assert all("dog" in p.read_text() for p in paths)
    assert not Journal(tmp_path).can_undo


def test_failed_write_midway_leaves_originals_and_history_intact(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path, 5)
    changes = _edit(paths)
    calls = {"n": 0}
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fsio.os, "write", failing_write)
    with pytest.raises(WriteError, match="No space left"):
        Journal(tmp_path).apply("edit", changes)
    monkeypatch.undo()
    assert [p.read_text() for p in paths] == [f"tag{i}, dog\n" for i in range(5)]
    assert not list(tmp_path.glob(".*.tmp"))
    assert not Journal(tmp_path).can_undo  # the journaled edit was marked aborted


def test_torn_last_journal_line_is_ignored(tmp_path: Path) -> None:
    paths = _files(tmp_path, 1)
    Journal(tmp_path).apply("edit", _edit(paths))
    with open(tmp_path / ".lora-tui" / "journal.jsonl", "a") as f:
        f.write('{"kind": "edit", "id": "x", "chan')
    assert Journal(tmp_path).peek_undo().label == "edit"


def test_writes_outside_the_project_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("a")
    root = tmp_path / "proj"
    root.mkdir()
    with pytest.raises(WriteError, match="outside the project"):
        Journal(root).apply("edit", [Change(outside, "a", "b")])
    assert outside.read_text() == "a"

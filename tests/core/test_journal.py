"""The journal: edits, undo and redo that survive a restart; nothing written elsewhere is overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_tui.core import fsio, swap
from lora_tui.core.fsio import WriteError
from lora_tui.core.journal import Change, Journal
from tests.helpers import write_caption_files


def _files(tmp_path: Path, n: int = 3) -> list[Path]:
    return write_caption_files(tmp_path, n)


def _edit(paths: list[Path]) -> list[Change]:
    return [Change(p, p.read_text(), p.read_text().replace("dog", "cat")) for p in paths]


def our_temporaries(root: Path) -> list[Path]:
    """Every temporary file of ours anywhere under ``root`` (the journal's folder included)."""
    return [p for p in root.rglob("*") if fsio.tmp_owner(p.name) is not None]


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


def test_a_caption_changed_since_the_preview_is_left_alone_and_reported(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    changes = _edit(paths)
    paths[1].write_text("hand edited\n")
    outcome = Journal(tmp_path).apply("edit", changes)
    assert paths[1].read_text() == "hand edited\n"
    assert [p.read_text() for p in (paths[0], paths[2])] == ["tag0, cat\n", "tag2, cat\n"]
    assert outcome.written == 2
    assert outcome.report(tmp_path) == "1 caption changed elsewhere was left alone: 1.txt"


def test_an_outside_edit_landing_right_before_the_swap_survives_byte_for_byte(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs per file just before its rename, not once at the start of the operation."""
    paths = _files(tmp_path, 5)
    changes = _edit(paths)
    theirs = b"written by vim \xc3\xa9\r\n"
    real_read = swap.read_current

    def read_after_an_outside_save(path: str) -> bytes | None:
        if path == str(paths[3]):  # the temporaries are written; the other program saves now
            paths[3].write_bytes(theirs)
        return real_read(path)

    monkeypatch.setattr(swap, "read_current", read_after_an_outside_save)
    outcome = Journal(tmp_path).apply("edit", changes)
    monkeypatch.undo()
    assert paths[3].read_bytes() == theirs
    assert "3.txt" in outcome.report(tmp_path) and outcome.written == 4
    assert not our_temporaries(tmp_path)


def test_the_journal_records_only_what_was_written(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    changes = _edit(paths)
    paths[0].write_text("hand edited\n")
    journal = Journal(tmp_path)
    journal.apply("edit", changes)
    assert journal.peek_undo().files == 2
    assert [c.path for c in journal.changes(journal.peek_undo())] == paths[1:]
    journal.undo()
    assert [p.read_text() for p in paths] == ["hand edited\n", "tag1, dog\n", "tag2, dog\n"]


def test_an_edit_that_wrote_nothing_leaves_no_history(tmp_path: Path) -> None:
    paths = _files(tmp_path, 1)
    changes = _edit(paths)
    paths[0].write_text("hand edited\n")
    outcome = Journal(tmp_path).apply("edit", changes)
    assert not outcome.applied and outcome.written == 0
    assert not Journal(tmp_path).can_undo


def test_undo_leaves_an_outside_change_alone_and_restores_the_rest(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    j = Journal(tmp_path)
    j.apply("edit", _edit(paths))
    paths[0].write_text("hand edited\n")
    outcome = j.undo()
    assert [p.read_text() for p in paths] == ["hand edited\n", "tag1, dog\n", "tag2, dog\n"]
    assert "0.txt" in outcome.report(tmp_path)
    j.redo()  # redo brings back exactly what undo restored
    assert [p.read_text() for p in paths] == ["hand edited\n", "tag1, cat\n", "tag2, cat\n"]


def test_read_only_caption_is_reported_and_the_rest_applied(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path)
    changes = _edit(paths)
    paths[2].chmod(0o444)
    real = os.access  # root can write anything: answer as a normal user's access() would
    monkeypatch.setattr(swap.os, "access", lambda p, m: not (Path(p) == paths[2] and m == os.W_OK) and real(p, m))
    outcome = Journal(tmp_path).apply("edit", changes)
    monkeypatch.undo()
    assert "read-only" in outcome.report(tmp_path) and "chmod u+w" in outcome.report(tmp_path)
    assert [p.read_text() for p in paths] == ["tag0, cat\n", "tag1, cat\n", "tag2, dog\n"]
    assert Journal(tmp_path).peek_undo().files == 2


def test_a_full_disk_while_writing_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert not our_temporaries(tmp_path)
    assert not Journal(tmp_path).can_undo  # the edit is marked aborted


def test_permissions_survive_a_rewrite(tmp_path: Path) -> None:
    paths = _files(tmp_path, 1)
    paths[0].chmod(0o664)
    Journal(tmp_path).apply("edit", _edit(paths))
    assert paths[0].stat().st_mode & 0o777 == 0o664


def test_a_new_caption_is_not_created_over_one_that_appeared_meanwhile(tmp_path: Path) -> None:
    new = tmp_path / "new.txt"
    change = Change(new, None, "mine\n")
    new.write_text("theirs\n")
    outcome = Journal(tmp_path).apply("create", [change])
    assert new.read_text() == "theirs\n" and not outcome.applied


def test_temporaries_live_in_the_journal_folder_not_beside_the_captions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path, 20)
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.fspath(src))
        return real_replace(src, dst)

    monkeypatch.setattr(swap.os, "replace", spy)
    Journal(tmp_path).apply("edit", _edit(paths))
    monkeypatch.undo()
    assert len(seen) == 20 and all(Path(s).parent.parent == tmp_path / ".lora-tui" / "tmp" for s in seen)
    assert not our_temporaries(tmp_path) and not list((tmp_path / ".lora-tui" / "tmp").iterdir())


def test_writes_outside_the_project_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("a")
    root = tmp_path / "proj"
    root.mkdir()
    with pytest.raises(WriteError, match="outside the project"):
        Journal(root).apply("edit", [Change(outside, "a", "b")])
    assert outside.read_text() == "a"


def test_forget_clears_the_history_and_keeps_the_files(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    journal = Journal(tmp_path)
    journal.apply("edit", _edit(paths))
    journal.forget()
    assert not Journal(tmp_path).can_undo and paths[0].read_text() == "tag0, cat\n"
    assert not (tmp_path / ".lora-tui" / "journal.db").exists()


def test_a_symlinked_caption_is_reported_and_the_link_kept(tmp_path: Path) -> None:
    paths = _files(tmp_path, 2)
    target = tmp_path / "real.txt"
    target.write_text(paths[1].read_text())
    paths[1].unlink()
    paths[1].symlink_to(target)
    outcome = Journal(tmp_path).apply("edit", _edit(paths))
    assert paths[1].is_symlink() and target.read_text() == "tag1, dog\n"
    assert "1.txt (is a symlink" in outcome.report(tmp_path) and paths[0].read_text() == "tag0, cat\n"

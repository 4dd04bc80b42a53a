"""Combining the edits of one task (a captioning run written piecemeal) into one undo step."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core.journal import Change, Journal


def _new(path: Path, text: str) -> Change:
    return Change(path, None, text)


def test_combined_edits_undo_in_one_step(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    (tmp_path / "old.txt").write_text("keep\n")
    j.apply("earlier edit", [Change(tmp_path / "old.txt", "keep\n", "kept\n")])
    seqs = [j.apply("part", [_new(tmp_path / f"{i}.txt", f"cap {i}\n")]).seq for i in range(3)]
    assert Journal(tmp_path).combine(seqs, "auto-caption 3 images") == 3
    history = Journal(tmp_path).history()
    assert [e.label for e in history] == ["earlier edit", "auto-caption 3 images"] and history[-1].files == 3
    Journal(tmp_path).undo()
    assert not any((tmp_path / f"{i}.txt").exists() for i in range(3))
    assert (tmp_path / "old.txt").read_text() == "kept\n"
    Journal(tmp_path).redo()
    assert [(tmp_path / f"{i}.txt").read_text() for i in range(3)] == ["cap 0\n", "cap 1\n", "cap 2\n"]


def test_a_fix_made_between_parts_is_undone_before_the_combined_run(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    first = j.apply("part", [_new(a, "auto a\n")]).seq
    j.apply("hand fix", [Change(a, "auto a\n", "fixed a\n")])
    second = j.apply("part", [_new(b, "auto b\n")]).seq
    j.combine([first, second], "run")
    assert [e.label for e in j.history()] == ["run", "hand fix"]
    j.undo()
    assert a.read_text() == "auto a\n"
    j.undo()
    assert not a.exists() and not b.exists()


def test_an_undone_part_stays_undone_and_separate(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    first = j.apply("part", [_new(tmp_path / "a.txt", "a\n")]).seq
    second = j.apply("part", [_new(tmp_path / "b.txt", "b\n")]).seq
    j.undo()
    assert j.combine([first, second], "run") == 1
    assert [e.label for e in j.history()] == ["run"] and j.can_redo

"""A damaged ``review.json`` (hand-edited, a merge conflict) neither crashes the app nor is silently replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tui.core.review import ReviewMarks


def _write(root: Path, text: str) -> Path:
    file = root / ".lora-tui" / "review.json"
    file.parent.mkdir(parents=True)
    file.write_text(text, "utf-8")
    return file


@pytest.mark.parametrize("marks", [None, 5, "reviewed", {"reviewed": True}])
def test_marks_of_the_wrong_type_are_ignored_not_a_crash(tmp_path: Path, marks: object) -> None:
    _write(tmp_path, json.dumps({"version": 1, "images": {"a.png": marks, "b.png": ["flagged"]}}))
    review = ReviewMarks(tmp_path)
    assert review.get("a.png") == frozenset() and review.get("b.png") == {"flagged"}


def test_an_unreadable_marks_file_is_kept_aside_before_the_first_new_mark_replaces_it(tmp_path: Path) -> None:
    conflict = '<<<<<<< HEAD\n{"version":1,"images":{"a.png":["reviewed"]}}\n=======\n{}\n>>>>>>> other\n'
    file = _write(tmp_path, conflict)
    review = ReviewMarks(tmp_path)
    review.set(["b.png"], "flagged", True)
    assert json.loads(file.read_text("utf-8"))["images"] == {"b.png": ["flagged"]}
    kept = sorted(file.parent.glob("review.json.unreadable*"))
    assert [k.read_text("utf-8") for k in kept] == [conflict]
    review.set(["c.png"], "flagged", True)  # the file is readable again: nothing more is set aside
    assert len(list(file.parent.glob("review.json.unreadable*"))) == 1

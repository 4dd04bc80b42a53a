"""The writer's order of work: a model's caption never sits on disk without its "needs-review" mark,
so a run killed outright (kill -9) between the two cannot slip an unreviewed caption past the review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tui.caption.run import Writer
from lora_tui.core import project
from lora_tui.core.journal import Change, Journal
from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks
from tests.caption.helpers import colour_project


def _marked_on_disk(root: Path) -> set[str]:
    file = root / ".lora-tui" / "review.json"
    data = json.loads(file.read_text("utf-8")) if file.exists() else {"images": {}}
    return {k for k, marks in data["images"].items() if NEEDS_REVIEW in marks}


def test_a_caption_lands_only_after_its_needs_review_mark_is_on_disk(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = colour_project(tmp_path / "p", ["red1", "green1", "blue1"])
    pics = root / "data" / "pics"
    seen: list[set[str]] = []
    original = Journal.apply

    def apply(self: Journal, label: str, changes: list[Change], **kw):  # type: ignore[no-untyped-def]
        seen.append(_marked_on_disk(root))  # what a kill -9 right now would leave in review.json
        return original(self, label, changes, **kw)

    monkeypatch.setattr(Journal, "apply", apply)
    writer = Writer(project.load(root), "auto-caption test")
    writer.put_many([(Change(pics / f"{n}.txt", None, f"{n}\n"), str(pics / f"{n}.png")) for n in ("red1", "green1")])
    writer.close(lambda n: f"auto-caption {n}")
    assert seen == [{"data/pics/red1.png", "data/pics/green1.png"}]
    assert _marked_on_disk(root) == {"data/pics/red1.png", "data/pics/green1.png"}


def test_an_image_whose_caption_was_left_alone_gets_no_needs_review_mark(tmp_path: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1", "green1", "blue1"])
    pics = root / "data" / "pics"
    ReviewMarks(root).set([pics / "blue1.png"], NEEDS_REVIEW, True)  # from an earlier run
    (pics / "green1.txt").write_text("written by hand meanwhile\n")
    (pics / "blue1.txt").write_text("also by hand\n")
    writer = Writer(project.load(root), "auto-caption test")
    writer.put_many([(Change(pics / f"{n}.txt", None, f"{n}\n"), str(pics / f"{n}.png"))
                     for n in ("red1", "green1", "blue1")])
    writer.close(lambda n: f"auto-caption {n}")
    assert (pics / "green1.txt").read_text() == "written by hand meanwhile\n"
    assert writer.written == 1 and len(writer.left_alone) == 2
    assert _marked_on_disk(root) == {"data/pics/red1.png", "data/pics/blue1.png"}  # blue1's earlier mark kept


def test_a_group_the_journal_refuses_takes_its_new_marks_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.core.errors import BusyError

    root = colour_project(tmp_path / "p", ["red1"])
    pics = root / "data" / "pics"

    def busy(self: Journal, label: str, changes: list[Change], **kw):  # type: ignore[no-untyped-def]
        raise BusyError("captions are being written by another lora-tui process")

    monkeypatch.setattr(Journal, "apply", busy)
    writer = Writer(project.load(root), "auto-caption test")
    writer.put_many([(Change(pics / "red1.txt", None, "red\n"), str(pics / "red1.png"))])
    with pytest.raises(BusyError):
        writer.close(lambda n: f"auto-caption {n}")
    assert _marked_on_disk(root) == set() and not (pics / "red1.txt").exists()

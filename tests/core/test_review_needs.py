"""The needs-review mark: set by auto-captioning, cleared by a review, never lost between processes."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks


def test_marking_reviewed_clears_needs_review(tmp_path: Path) -> None:
    marks = ReviewMarks(tmp_path)
    marks.set([tmp_path / "a.png"], NEEDS_REVIEW, True)
    marks.set([tmp_path / "a.png"], "reviewed", True)
    assert ReviewMarks(tmp_path).get(tmp_path / "a.png") == {"reviewed"}


def test_marks_set_by_another_process_survive_a_change_here(tmp_path: Path) -> None:
    app = ReviewMarks(tmp_path)
    app.set([tmp_path / "a.png"], "flagged", True)
    ReviewMarks(tmp_path).set([tmp_path / "b.png"], NEEDS_REVIEW, True)  # the captioner, elsewhere
    app.set([tmp_path / "c.png"], "reviewed", True)
    again = ReviewMarks(tmp_path)
    assert again.has("b.png", NEEDS_REVIEW) and again.has("a.png", "flagged") and again.has("c.png", "reviewed")


def test_the_review_filter_lists_needs_review_first_and_can_show_only_those(tmp_path: Path) -> None:
    from lora_tui.core import project, scan
    from lora_tui.core.dataset_index import DatasetIndex, Filter
    from tests.caption.helpers import colour_project

    root = colour_project(tmp_path / "p", ["blue1", "green1", "red1"], captions={"red1": "red theme\n"})
    marks = ReviewMarks(root)
    marks.set([root / "data" / "pics" / "red1.png"], NEEDS_REVIEW, True)
    marks.set([root / "data" / "pics" / "blue1.png"], "reviewed", True)
    index = DatasetIndex(scan.scan_project(project.load(root)), marks)
    assert [r.record.name for r in index.apply(Filter(state="unreviewed"))] == ["red1.png", "green1.png"]
    assert [r.record.name for r in index.apply(Filter(state=NEEDS_REVIEW))] == ["red1.png"]


def test_a_needs_review_mark_on_an_image_whose_caption_was_undone_is_not_listed(tmp_path: Path) -> None:
    from lora_tui.core import project, scan
    from lora_tui.core.dataset_index import DatasetIndex, Filter
    from tests.caption.helpers import colour_project

    root = colour_project(tmp_path / "p", ["blue1", "red1"], captions={"red1": "red\n"})
    marks = ReviewMarks(root)
    marks.set([root / "data" / "pics" / n for n in ("blue1.png", "red1.png")], NEEDS_REVIEW, True)
    index = DatasetIndex(scan.scan_project(project.load(root)), marks)
    assert [r.record.name for r in index.apply(Filter(state=NEEDS_REVIEW))] == ["red1.png"]
    assert [r.record.name for r in index.apply(Filter(state="unreviewed"))] == ["red1.png", "blue1.png"]

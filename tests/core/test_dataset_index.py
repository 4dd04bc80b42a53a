"""The dataset index behind the image list: filters, orders, counts, progress."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core import project, scan
from lora_tui.core.dataset_index import DatasetIndex, Filter
from lora_tui.core.review import ReviewMarks
from tests.helpers import write_images, write_project


def _index(tmp_path: Path) -> DatasetIndex:
    write_images(tmp_path / "a", [(64, 64)] * 3, captions={0: "b tag, x", 1: "a tag", 2: ", ".join(["w"] * 90)})
    write_images(tmp_path / "r", [(64, 64)] * 2, seed=4)
    write_project(tmp_path, [{"resolution": 512, "subsets": [
        {"image_dir": "a"}, {"image_dir": "r", "is_reg": True, "class_tokens": "woman"}]}])
    proj = project.load(tmp_path)
    return DatasetIndex(scan.scan_project(proj), ReviewMarks(proj.root))


def test_filters_combine(tmp_path: Path) -> None:
    index = _index(tmp_path)
    assert len(index.apply(Filter())) == 5
    assert [r.record.name for r in index.apply(Filter(tag="woman"))] == ["img0000.png", "img0001.png"]
    assert [r.record.name for r in index.apply(Filter(subset="0.0", text="TAG"))] == ["img0000.png", "img0001.png"]
    assert len(index.apply(Filter(state="uncaptioned"))) == 2  # reg images train on class tokens


def test_orders(tmp_path: Path) -> None:
    index = _index(tmp_path)
    assert [r.text[:5] for r in index.apply(Filter(subset="0.0", order="caption"))] == ["a tag", "b tag", "w, w,"]
    assert index.apply(Filter(order="tokens"))[0].tokens > 75


def test_progress_and_review_states(tmp_path: Path) -> None:
    index = _index(tmp_path)
    index.marks.set([index.rows[0].key, index.rows[1].key], "reviewed", True)
    assert index.progress(index.apply(Filter())) == (2, 5)
    assert len(index.apply(Filter(state="unreviewed"))) == 3
    assert index.tag_counts(index.rows)["woman"] == 2

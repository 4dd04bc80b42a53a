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


def _listed_only(tmp_path: Path):
    write_images(tmp_path / "a", [(64, 64)] * 3, captions={0: "b tag, x", 1: "a tag"})
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}])
    proj = project.load(tmp_path)
    scans = scan.scan_project(proj, read_captions=False)
    return proj, scans, DatasetIndex(scans, ReviewMarks(proj.root))


def test_a_listing_shows_captions_as_pending_until_read(tmp_path: Path) -> None:
    _, scans, index = _listed_only(tmp_path)
    assert [r.caption_state for r in index.rows] == ["pending", "pending", "missing"]
    assert index.rows[0].text == "" and index.rows[0].tokens == 0
    assert scan.load_pending_captions(scans)
    assert [r.caption_state for r in index.rows] == ["ok", "ok", "missing"]
    assert index.rows[0].text == "b tag, x" and index.rows[0].tokens > 0


def test_reading_pending_captions_stops_when_asked(tmp_path: Path) -> None:
    _, scans, _ = _listed_only(tmp_path)
    assert not scan.load_pending_captions(scans, should_stop=lambda: True)


def test_editing_a_pending_caption_starts_from_the_file(tmp_path: Path) -> None:
    from lora_tui.core import bulk
    from lora_tui.core.caption_edit import current_text
    from lora_tui.core.journal import Journal

    proj, _, index = _listed_only(tmp_path)
    assert current_text(index.rows[0].record) == "b tag, x"  # read on demand
    targets = [(r.subset, r.record) for r in index.rows]
    assert index.rows[1].record.caption_pending
    preview = bulk.add_tag(targets, "new")
    preview.apply(Journal(proj.root, [tmp_path / "a"]))
    assert (tmp_path / "a" / "img0001.txt").read_text() == "a tag, new"  # never "new" alone


def test_pending_captions_are_read_in_time_slices(tmp_path: Path) -> None:
    _, scans, index = _listed_only(tmp_path)
    reader = scan.PendingCaptions(scans)
    assert not reader.done
    assert reader.read(0.0)  # the clock is checked every 32 captions: a small set finishes in one slice
    assert reader.done and [r.caption_state for r in index.rows] == ["ok", "ok", "missing"]


def test_a_slice_stops_at_its_budget_and_the_next_one_goes_on(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(8, 8)] * 70, captions={i: f"t{i}" for i in range(70)})
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}])
    scans = scan.scan_project(project.load(tmp_path), read_captions=False)
    reader = scan.PendingCaptions(scans)
    assert not reader.read(0.0)  # stops after the first block of 32
    assert sum(not r.caption_pending for r in scans[0].records) == 32
    assert not reader.read(0.0) and reader.read(0.0)
    assert all(r.caption is not None for r in scans[0].records)


def test_row_keys_are_the_review_marks_keys_inside_and_outside_the_project(tmp_path: Path) -> None:
    root, outside = tmp_path / "proj", tmp_path / "elsewhere"
    write_images(root, [(64, 64)] * 2)
    write_images(root / "deep" / "er", [(64, 64)] * 2, seed=2)
    write_images(outside, [(64, 64)] * 2, seed=3)
    write_project(root, [{"resolution": 512, "subsets": [
        {"image_dir": "."}, {"image_dir": "deep/er"}, {"image_dir": str(outside)}]}])
    proj = project.load(root)
    marks = ReviewMarks(proj.root)
    index = DatasetIndex(scan.scan_project(proj), marks)
    assert len(index.rows) == 6
    assert [r.key for r in index.rows] == [marks.key(r.record.path) for r in index.rows]
    assert [r.key for r in index.rows][:3] == ["img0000.png", "img0001.png", "deep/er/img0000.png"]
    assert index.rows[-1].key == str(outside / "img0001.png")

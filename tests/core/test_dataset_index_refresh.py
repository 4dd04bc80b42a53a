"""Refreshing the index from a list of changed files re-reads only those images."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from lora_tui.core import project, scan
from lora_tui.core.dataset_index import DatasetIndex, Filter
from lora_tui.core.review import ReviewMarks
from tests.helpers import write_images, write_project


def _index(tmp_path: Path) -> DatasetIndex:
    write_images(tmp_path / "a", [(64, 64)] * 3, captions={0: "b tag, x", 1: "a tag", 2: "w"})
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}])
    proj = project.load(tmp_path)
    return DatasetIndex(scan.scan_project(proj), ReviewMarks(proj.root))


def test_a_changed_caption_is_reread_and_only_its_row_reported(tmp_path: Path) -> None:
    index = _index(tmp_path)
    before = index.tag_counts(index.rows)
    (tmp_path / "a" / "img0001.txt").write_text("a tag, smile\n")
    done = index.refresh([tmp_path / "a" / "img0001.txt"])
    assert [r.record.name for r in done.rows] == ["img0001.png"]
    assert index.rows[1].text == "a tag, smile" and not done.view_changed
    assert index.tag_counts(index.rows) == before + Counter({"smile": 1}) and done.tags_changed


def test_untouched_rows_are_not_reread(tmp_path: Path) -> None:
    index = _index(tmp_path)
    (tmp_path / "a" / "img0000.txt").write_text("changed behind our back\n")
    index.refresh([tmp_path / "a" / "img0001.txt"])
    assert index.rows[0].text == "b tag, x"


def test_a_new_caption_for_an_uncaptioned_image_is_picked_up(tmp_path: Path) -> None:
    index = _index(tmp_path)
    (tmp_path / "a" / "img0002.txt").unlink()
    index.refresh([tmp_path / "a" / "img0002.txt"])
    assert index.rows[2].record.caption is None and index.rows[2].caption_state == "missing"
    (tmp_path / "a" / "img0002.txt").write_text("back\n")
    index.refresh([tmp_path / "a" / "img0002.txt"])
    assert index.rows[2].text == "back"


def test_a_caption_leaving_the_tag_filter_updates_the_view(tmp_path: Path) -> None:
    index = _index(tmp_path)
    index.apply(Filter(tag="a tag"))
    (tmp_path / "a" / "img0001.txt").write_text("other\n")
    done = index.refresh([tmp_path / "a" / "img0001.txt"])
    assert done.view_changed and index.view == []


def test_an_added_image_rescans_its_subset(tmp_path: Path) -> None:
    index = _index(tmp_path)
    shutil.copy(tmp_path / "a" / "img0000.png", tmp_path / "a" / "new.png")
    done = index.refresh([tmp_path / "a" / "new.png"])
    assert done.view_changed and "new.png" in [r.record.name for r in index.view]
    (tmp_path / "a" / "new.png").unlink()
    index.refresh([tmp_path / "a" / "new.png"])
    assert "new.png" not in [r.record.name for r in index.rows]


def test_a_bom_and_crlf_caption_reads_as_the_editor_shows_it(tmp_path: Path) -> None:
    from lora_tui.core.captions import caption_text

    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffa, b\r\nsecond\r\n".encode())
    assert caption_text(path) == "a, b\r\nsecond\r\n"
    assert caption_text(tmp_path / "none.txt") is None


def test_the_journal_names_what_it_wrote_with_the_content_hash(tmp_path: Path) -> None:
    from lora_tui.core.journal import Change, Journal
    from lora_tui.core.journal_store import text_hash

    index = _index(tmp_path)
    journal = Journal(tmp_path)
    target = tmp_path / "a" / "img0001.txt"
    outcome = journal.apply("edit", [Change(target, "a tag", "new\n")])
    assert outcome.wrote == ((target, text_hash(b"new\n")),)
    undone = journal.undo()
    assert undone.wrote == ((target, text_hash(b"a tag")),)
    assert index.refresh([p for p, _ in undone.wrote]).rows[0].text == "a tag"

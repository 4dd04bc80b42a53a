"""Bulk caption operations: previews first, journaled apply, sd-scripts' tag semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import bulk, project, scan
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.journal import Journal
from tests.helpers import write_images, write_project


@pytest.fixture
def proj(tmp_path: Path) -> project.Project:
    write_images(tmp_path / "a", [(64, 64)] * 4, captions={0: "1girl, red shirt, smile\n",
                                                          1: "red shirt, 1girl, red shirt\n",
                                                          2: "blue sky\nsecond line, red shirt\n"})
    write_images(tmp_path / "r", [(64, 64)] * 2, captions={0: "woman, red shirt"}, seed=3)
    write_project(tmp_path, [{"resolution": 512, "subsets": [
        {"image_dir": "a", "keep_tokens": 1}, {"image_dir": "r", "is_reg": True}]}])
    return project.load(tmp_path)


def _targets(p: project.Project, **kw) -> list:
    return bulk.select_targets(scan.scan_project(p), **kw)


def test_rename_previews_then_applies_and_undoes(proj: project.Project) -> None:
    preview = bulk.rename_tag(_targets(proj), "red shirt", "crimson shirt")
    assert len(preview) == 2  # image 2's second line is ignored by sd-scripts; reg not included
    first = proj.root / "a" / "img0000.txt"
    assert first.read_text() == "1girl, red shirt, smile\n"  # preview wrote nothing
    journal = Journal(proj.root)
    preview.apply(journal)
    assert first.read_text() == "1girl, crimson shirt, smile\n"
    assert (proj.root / "a" / "img0001.txt").read_text() == "crimson shirt, 1girl\n"
    journal.undo()
    assert first.read_text() == "1girl, red shirt, smile\n"


def test_rename_in_wildcard_mode_edits_every_line(proj: project.Project) -> None:
    proj.general["enable_wildcard"] = True
    preview = bulk.rename_tag(_targets(proj), "red shirt", "crimson shirt")
    changed = {c.path.name: c.after for c in preview.changes}
    assert changed["img0002.txt"] == "blue sky\nsecond line, crimson shirt\n"


def test_add_tag_front_and_end(proj: project.Project) -> None:
    front = bulk.add_tag(_targets(proj), "masterpiece", position="front")
    assert front.changes[0].after.startswith("masterpiece, 1girl")
    end = bulk.add_tag(_targets(proj), "smile")
    assert {c.path.name for c in end.changes} == {"img0001.txt", "img0002.txt"}


def test_add_tag_creates_captions_only_when_asked(proj: project.Project) -> None:
    assert all(c.before is not None for c in bulk.add_tag(_targets(proj), "x").changes)
    created = [c for c in bulk.add_tag(_targets(proj), "x", create_missing=True).changes if c.before is None]
    assert [c.path.name for c in created] == ["img0003.txt"] and created[0].after == "x\n"


def test_remove_tag(proj: project.Project) -> None:
    preview = bulk.remove_tag(_targets(proj), "1girl")
    assert preview.changes[0].after == "red shirt, smile\n"


def test_trigger_word_moves_to_the_front(proj: project.Project) -> None:
    preview = bulk.prepend_trigger(_targets(proj), "smile")
    assert preview.changes[0].after == "smile, 1girl, red shirt\n"


def test_dedupe_and_sort_respect_keep_tokens(proj: project.Project) -> None:
    assert bulk.dedupe_tags(_targets(proj)).changes[0].after == "red shirt, 1girl\n"
    (proj.root / "a" / "img0000.txt").write_text("zebra, c, B, a\n")
    sorted_ = {c.path.name: c.after for c in bulk.sort_tags(_targets(proj)).changes}
    assert sorted_ == {"img0000.txt": "zebra, a, B, c\n"}  # keep_tokens = 1 keeps the first tag


def test_find_replace_literal_and_regex(proj: project.Project) -> None:
    lit = bulk.find_replace(_targets(proj), "shirt", "dress")
    assert lit.changes[0].after == "1girl, red dress, smile\n"
    rx = bulk.find_replace(_targets(proj), r"(\w+) shirt", r"\1 top", regex=True)
    assert rx.changes[0].after == "1girl, red top, smile\n"
    with pytest.raises(LoraTuiError, match="invalid regular expression"):
        bulk.find_replace(_targets(proj), "(", "x", regex=True)


def test_literal_replacement_keeps_backslashes(proj: project.Project) -> None:
    preview = bulk.find_replace(_targets(proj), "smile", r"\1 smile")
    assert preview.changes[0].after == "1girl, red shirt, \\1 smile\n"


def test_reg_subsets_only_on_request(proj: project.Project) -> None:
    assert len(bulk.rename_tag(_targets(proj, include_reg=True), "red shirt", "x")) == 3
    assert len(bulk.rename_tag(_targets(proj, names=["r"]), "red shirt", "x")) == 1
    with pytest.raises(LoraTuiError, match="no subset named"):
        _targets(proj, names=["nope"])


def test_bom_is_dropped_on_rewrite_and_restored_on_undo(proj: project.Project) -> None:
    path = proj.root / "a" / "img0000.txt"
    path.write_bytes("\ufeff1girl, red shirt\n".encode())
    journal = Journal(proj.root)
    bulk.remove_tag(_targets(proj), "1girl").apply(journal)
    assert path.read_bytes() == b"red shirt\n"
    journal.undo()
    assert path.read_bytes() == "\ufeff1girl, red shirt\n".encode()


def test_tag_counts(proj: project.Project) -> None:
    counts = bulk.tag_counts(_targets(proj))
    assert counts["red shirt"] == 2 and counts["1girl"] == 2 and next(iter(counts)) in ("1girl", "red shirt")

"""Fine-tuning captions are editable: in the metadata file, journaled, undoable, locked like caption files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tui.cli import main
from lora_tui.core import project, scan
from lora_tui.core.caption_edit import CaptionConflict, current_text, save_caption
from lora_tui.core.journal import Journal
from lora_tui.train.data.captions import metadata_caption
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[2]


def _project(root: Path, entries: dict[str, dict], *, meta: str = "meta.json", **subset: object) -> Path:
    write_images(root / "imgs", [(64, 64)] * 4, prefix="f")
    path = root / meta
    if meta.endswith(".jsonl"):
        path.write_text("".join(json.dumps({"image_path": k, **v}) + "\n" for k, v in entries.items()))
    else:
        path.write_text(json.dumps(entries, indent=2) + "\n")
    write_project(root, [{"resolution": 64, "subsets": [{"image_dir": "imgs", "metadata_file": meta, **subset}]}])
    return path


def _record(root: Path, name: str) -> tuple[project.Subset, scan.ImageRecord]:
    [result] = scan.scan_project(project.load(root))
    return result.subset, next(r for r in result.records if r.name == name)


def _trained(root: Path, name: str) -> str:
    """The caption sd-scripts builds for the entry as it now is on disk."""
    sub, record = _record(root, name)
    caption, tags = record.meta_raw or (None, None)
    return metadata_caption(caption, tags, sub.get("caption_separator") or ",", bool(sub.get("enable_wildcard")))


@pytest.mark.parametrize(("entry", "edited"), [
    ({"caption": "a dog", "tags": "grass, sky"}, "a brown dog,grass, sky"),  # tags untouched stay tags
    ({"caption": "a dog", "tags": "grass, sky"}, "a dog, running"),  # tags edited: folded into caption
    ({"tags": "grass, sky"}, "grass, sky, tree"),  # a tags-only entry (WD14) keeps them in tags
    ({"caption": "a dog"}, "a cat"),
])
def test_sd_scripts_trains_exactly_the_edited_text(tmp_path: Path, entry: dict, edited: str) -> None:
    _project(tmp_path, {"f0000.png": entry})
    sub, record = _record(tmp_path, "f0000.png")
    assert save_caption(Journal.for_project(project.load(tmp_path)), sub, record, edited)
    assert _trained(tmp_path, "f0000.png") == edited


def test_the_editor_shows_caption_and_tags_as_sd_scripts_joins_them(tmp_path: Path) -> None:
    _project(tmp_path, {"f0000.png": {"caption": "a dog", "tags": "grass"}})
    sub, record = _record(tmp_path, "f0000.png")
    assert current_text(record, sub) == "a dog,grass"


def test_with_wildcards_the_caption_is_edited_and_tags_kept(tmp_path: Path) -> None:
    meta = _project(tmp_path, {"f0000.png": {"caption": "a dog\na hound", "tags": "grass"}}, enable_wildcard=True)
    sub, record = _record(tmp_path, "f0000.png")
    assert current_text(record, sub) == "a dog\na hound"
    save_caption(Journal.for_project(project.load(tmp_path)), sub, record, "a dog\na puppy")
    assert json.loads(meta.read_text())["f0000.png"] == {"caption": "a dog\na puppy", "tags": "grass"}


def test_jsonl_lines_not_edited_stay_byte_for_byte(tmp_path: Path) -> None:
    meta = _project(tmp_path, {f"f{i:04d}.png": {"caption": f"c{i}"} for i in range(3)}, meta="meta.jsonl")
    lines = meta.read_text().splitlines()
    sub, record = _record(tmp_path, "f0001.png")
    save_caption(Journal.for_project(project.load(tmp_path)), sub, record, "new")
    after = meta.read_text().splitlines()
    assert (after[0], after[2]) == (lines[0], lines[2]) and json.loads(after[1])["caption"] == "new"


def test_an_entry_changed_elsewhere_since_loading_is_a_conflict_and_nothing_is_written(tmp_path: Path) -> None:
    meta = _project(tmp_path, {"f0000.png": {"caption": "a dog"}})
    sub, record = _record(tmp_path, "f0000.png")
    meta.write_text(json.dumps({"f0000.png": {"caption": "theirs"}}))
    with pytest.raises(CaptionConflict):
        save_caption(Journal.for_project(project.load(tmp_path)), sub, record, "mine")
    assert json.loads(meta.read_text()) == {"f0000.png": {"caption": "theirs"}}


def test_cli_set_then_undo_restores_the_metadata_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = _project(tmp_path, {"f0000.png": {"caption": "a dog", "tags": "grass"}})
    before = meta.read_bytes()
    assert main(["captions", str(tmp_path), "set", "f0000.png", "a cat,grass"]) == 0
    assert meta.read_bytes() == before  # preview only
    assert main(["captions", str(tmp_path), "set", "f0000.png", "a cat,grass", "--yes"]) == 0
    assert json.loads(meta.read_text())["f0000.png"] == {"caption": "a cat", "tags": "grass"}
    assert main(["captions", str(tmp_path), "show"]) == 0
    assert f"{tmp_path / 'imgs' / 'f0000.png'}\ta cat,grass" in capsys.readouterr().out
    assert main(["captions", str(tmp_path), "undo"]) == 0
    assert meta.read_bytes() == before


def test_two_writers_on_one_metadata_file_at_once_both_land(tmp_path: Path) -> None:
    meta = _project(tmp_path, {f"f{i:04d}.png": {"caption": f"c{i}"} for i in range(4)})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LORA_TUI_LOCK_WAIT": "60"}
    for round_ in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "lora_tui", "captions", str(tmp_path), "set",
                                   f"f{i:04d}.png", f"edit {round_} {i}", "--yes"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
        for proc in procs:
            assert proc.wait(120) == 0, proc.stderr.read()
        data = json.loads(meta.read_text())
        assert [data[f"f{i:04d}.png"]["caption"] for i in range(4)] == [f"edit {round_} {i}" for i in range(4)]
    assert len(Journal.for_project(project.load(tmp_path)).history()) == 12


def test_bulk_add_tag_edits_metadata_entries_and_undo_restores(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    meta = _project(tmp_path, {"f0000.png": {"caption": "a dog", "tags": "grass"}, "f0001.png": {"tags": "sky"}})
    before = meta.read_bytes()
    assert main(["captions", str(tmp_path), "add", "wet"]) == 0
    assert "2 captions in 1 metadata files" in capsys.readouterr().out and meta.read_bytes() == before
    assert main(["captions", str(tmp_path), "add", "wet", "--yes"]) == 0
    # the tag operations re-join tags with ", ", as they do in caption files
    assert _trained(tmp_path, "f0000.png") == "a dog, grass, wet" and _trained(tmp_path, "f0001.png") == "sky, wet"
    assert json.loads(meta.read_text())["f0001.png"] == {"tags": "sky, wet"}
    assert main(["captions", str(tmp_path), "undo"]) == 0
    assert meta.read_bytes() == before


def test_an_unsaved_metadata_edit_is_kept_under_the_image_name_and_listed(tmp_path: Path) -> None:
    from lora_tui.core import unsaved

    kept = unsaved.stash(tmp_path, tmp_path / "meta.json", "a dog, wet", "busy", entry="sub/f0000.png")
    assert unsaved.stashed(tmp_path) == [kept] and kept.name.endswith("-f0000.png.txt")
    note = json.loads(kept.with_name(kept.name + ".json").read_text())
    assert (note["caption"], note["entry"]) == (str(tmp_path / "meta.json"), "sub/f0000.png")

"""Failure modes found in review: partial writes, damaged journals, odd captions, out-of-range settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lora_tui.core import bulk, configs, fsio, lint, project, scaffold, scan, steps
from lora_tui.core.errors import ConfigError, JournalError, LoraTuiError, ProjectError
from lora_tui.core.fsio import WriteError
from lora_tui.core.journal import Change, Journal
from tests.helpers import write_caption_files, write_images, write_project


def _caps(tmp_path: Path, n: int = 3) -> list[Path]:
    return write_caption_files(tmp_path, n, prefix="t")


def test_a_rename_failing_midway_is_reported_and_the_rest_stays_undoable(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _caps(tmp_path)
    real, calls = os.replace, {"n": 0}

    def flaky(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(fsio.os, "replace", flaky)
    outcome = Journal(tmp_path).apply("edit", [Change(p, p.read_text(), "cat\n") for p in paths])
    monkeypatch.undo()
    assert outcome.written == 2 and "1.txt (cannot replace: Input/output error)" in outcome.report(tmp_path)
    journal = Journal(tmp_path)
    assert journal.can_undo
    journal.undo()
    assert [p.read_text() for p in paths] == ["t0, dog\n", "t1, dog\n", "t2, dog\n"]


def test_an_edit_after_a_torn_journal_line_is_not_lost(tmp_path: Path) -> None:
    paths = _caps(tmp_path, 1)
    (tmp_path / ".lora-tui").mkdir()
    (tmp_path / ".lora-tui" / "journal.jsonl").write_bytes(b'{"kind": "edit", "id": "x", "label": "caf\xc3')
    Journal(tmp_path).apply("second", [Change(paths[0], paths[0].read_text(), "cat\n")])
    assert Journal(tmp_path).peek_undo().label == "second"


def test_damaged_old_journal_records_are_skipped(tmp_path: Path) -> None:
    paths = _caps(tmp_path, 1)
    (tmp_path / ".lora-tui").mkdir()
    good = json.dumps({"kind": "edit", "id": "e1", "label": "ok", "t": 1.0,
                       "changes": [{"path": "0.txt", "before": "x\n", "after": paths[0].read_text()}]})
    (tmp_path / ".lora-tui" / "journal.jsonl").write_text(f'[1, 2]\n{{"kind": "edit"}}\n"x"\n{good}\n')
    journal = Journal(tmp_path)
    assert "1 edits" in journal.recover()
    assert [e.label for e in journal.history()] == ["ok"]


def test_an_unreadable_journal_is_a_one_line_error_and_forget_clears_it(tmp_path: Path) -> None:
    (tmp_path / ".lora-tui" / "journal.jsonl").mkdir(parents=True)
    with pytest.raises(JournalError, match="forget"):
        Journal(tmp_path).recover()
    from lora_tui.core.journal import clear_journal

    clear_journal(tmp_path)
    assert Journal(tmp_path).recover() is None and not Journal(tmp_path).can_undo


def test_a_damaged_journal_database_is_a_one_line_error_and_forget_clears_it(tmp_path: Path) -> None:
    (tmp_path / ".lora-tui").mkdir()
    (tmp_path / ".lora-tui" / "journal.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="forget") as err:
        Journal(tmp_path)
    assert "\n" not in str(err.value)
    from lora_tui.core.journal import clear_journal

    clear_journal(tmp_path)
    assert not Journal(tmp_path).can_undo


def test_an_aborted_edit_keeps_redo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _caps(tmp_path, 2)
    journal = Journal(tmp_path)
    journal.apply("one", [Change(paths[0], paths[0].read_text(), "cat\n")])
    journal.undo()
    monkeypatch.setattr(fsio.os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(WriteError):
        journal.apply("two", [Change(paths[1], paths[1].read_text(), "cat\n")])
    monkeypatch.undo()
    assert Journal(tmp_path).peek_redo().label == "one"


@pytest.fixture
def proj(tmp_path: Path) -> project.Project:
    write_images(tmp_path / "a", [(64, 64)] * 2, captions={0: "sks\n", 1: "sks, 1girl ||| zebra, apple\n"})
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "keep_tokens_separator": "|||"}]}])
    return project.load(tmp_path)


def test_removing_the_last_tag_deletes_the_caption_instead_of_emptying_it(proj: project.Project) -> None:
    targets = bulk.select_targets(scan.scan_project(proj))
    preview = bulk.remove_tag(targets, "sks")
    journal = Journal(proj.root)
    preview.apply(journal)
    assert not (proj.root / "a" / "img0000.txt").exists()
    journal.undo()
    assert (proj.root / "a" / "img0000.txt").read_text() == "sks\n"


def test_sort_keeps_the_part_before_keep_tokens_separator(proj: project.Project) -> None:
    preview = bulk.sort_tags(bulk.select_targets(scan.scan_project(proj)))
    assert [c.after for c in preview.changes] == ["sks, 1girl ||| apple, zebra\n"]


def test_tags_with_separators_or_line_breaks_are_refused(proj: project.Project) -> None:
    targets = bulk.select_targets(scan.scan_project(proj))
    for bad in ("a, b", "x\ny"):
        with pytest.raises(LoraTuiError):
            bulk.add_tag(targets, bad)


def test_images_sharing_a_face_crop_caption_change_it_once(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)] * 2)
    (tmp_path / "a" / "img0000.png").rename(tmp_path / "a" / "a_1_2_3_4.png")
    (tmp_path / "a" / "img0001.png").rename(tmp_path / "a" / "a_5_6_7_8.png")
    (tmp_path / "a" / "a.txt").write_text("sks\n")
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}])
    targets = bulk.select_targets(scan.scan_project(project.load(tmp_path)))
    preview = bulk.add_tag(targets, "new")
    assert len(preview) == 1
    preview.apply(Journal(tmp_path))
    assert (tmp_path / "a" / "a.txt").read_text() == "sks, new\n"


@pytest.mark.parametrize("where,key,value,message", [
    ("dataset", "batch_size", 0, "at least 1"),
    ("dataset", "resolution", 0, "at least 64"),
    ("dataset", "validation_split", 2.0, "at most 1.0"),
    ("training", "max_train_epochs", 0, "at least 1"),
    ("training", "gradient_accumulation_steps", -1, "at least 1"),
    ("launch", "num_processes", 0, "at least 1"),
])
def test_out_of_range_settings_are_refused_on_load(tmp_path: Path, where: str, key: str, value: object,
                                                   message: str) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    dataset = {"resolution": 512, "subsets": [{"image_dir": "a"}]}
    training = {"network_module": "networks.lora", "max_train_epochs": 1}
    launch = {}
    {"dataset": dataset, "training": training, "launch": launch}[where][key] = value
    write_project(tmp_path, [dataset], training=training, launch=launch)
    with pytest.raises(ConfigError, match=message):
        project.load(tmp_path)


def test_nothing_to_train_is_refused_by_config_and_an_error_in_check(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "num_repeats": 0}]}])
    proj = project.load(tmp_path)
    with pytest.raises(ConfigError, match="nothing to train on"):
        configs.write(proj, steps.compute(proj))
    assert "nothing-to-train" in {f.code for f in lint.check_project(proj).errors}


def test_an_empty_caption_extension_stays_empty_as_in_sd_scripts(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}], general={"caption_extension": ""})
    assert project.load(tmp_path).subsets[0].get("caption_extension") == ""


def test_malformed_metadata_entries_are_reported_not_raised(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    (tmp_path / "meta.json").write_text(json.dumps({"img0000.png": 5}))
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "metadata_file": "meta.json"}]}])
    proj = project.load(tmp_path)
    result = scan.scan_project(proj)[0]
    assert "malformed" in (result.error or "")
    assert "subset-unreadable" in {f.code for f in lint.check_project(proj).errors}


def test_an_unreadable_hugging_face_cache_falls_back_to_estimates(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.core import clip_tokens

    monkeypatch.setattr(Path, "iterdir", lambda self: (_ for _ in ()).throw(PermissionError(13, "denied")))
    assert clip_tokens.find_tokenizer(None) is None


def test_new_on_a_file_and_from_a_missing_folder_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="not a folder"):
        scaffold.write_project(scaffold.new_project(tmp_path / "file"))
    with pytest.raises(ProjectError, match="--from-images"):
        scaffold.new_project(tmp_path / "p", from_images=tmp_path / "nope")
    assert not (tmp_path / "p").exists()


def test_a_file_where_configs_should_be(simple_project: Path) -> None:
    (simple_project / "configs").write_text("in the way")
    with pytest.raises(ConfigError, match="configs folder"):
        configs.write(project.load(simple_project))


def test_a_journal_from_another_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    import sqlite3

    paths = _caps(tmp_path, 1)
    Journal(tmp_path).apply("edit", [Change(paths[0], paths[0].read_text(), "cat\n")])
    with sqlite3.connect(tmp_path / ".lora-tui" / "journal.db") as conn:
        conn.execute("UPDATE meta SET v='99' WHERE k='version'")
    with pytest.raises(JournalError, match=r"another version of lora-tui.*forget"):
        Journal(tmp_path)
    assert paths[0].read_text() == "cat\n"

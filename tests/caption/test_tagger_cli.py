"""``lora-tui caption`` with a WD14-style ONNX tagger, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tui.caption import run as caption_run
from lora_tui.cli import main
from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks
from tests.caption.helpers import colour_project


def pics(root: Path) -> Path:
    return root / "data" / "pics"


def caption(root: Path, *args: str) -> int:
    return main(["caption", str(root), *args])


def test_tags_land_with_the_trigger_first_ordered_by_confidence(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1", "blue1"], trigger="sks")
    assert caption(root, "--model", str(tagger)) == 0
    # red theme 0.98 > long hair 0.88 > ^_^ 0.82 (kaomoji keep their underscore); character 0.5 < 0.85
    assert (pics(root) / "red1.txt").read_text() == "sks, red theme, long hair, ^_^\n"
    assert (pics(root) / "blue1.txt").read_text() == "sks, blue theme, long hair, ^_^\n"


def test_new_captions_are_marked_needs_review(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1", "green1"], captions={"green1": "grass\n"})
    caption(root, "--model", str(tagger))
    marks = ReviewMarks(root)
    assert marks.with_mark(NEEDS_REVIEW) == {"data/pics/red1.png"}


def test_missing_only_leaves_existing_captions_byte_for_byte(tmp_path: Path, tagger: Path) -> None:
    odd = {"red1": "\ufeffsky,blue  \r\nsecond line\r\n", "green1": "x", "blue1": "tag\n\n\n"}
    root = colour_project(tmp_path / "p", ["red1", "green1", "blue1", "red2"], captions=odd)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in pics(root).glob("*.txt")}
    assert caption(root, "--model", str(tagger)) == 0
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in pics(root).glob("*.txt")}
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"red2.txt"}


def test_one_undo_takes_back_the_whole_run(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1", "red2", "green1", "blue1", "blue2"], captions={"blue2": "kept\n"})
    assert caption(root, "--model", str(tagger), "--overwrite", "--batch-size", "1") == 0
    assert (pics(root) / "blue2.txt").read_text().startswith("blue theme")
    assert main(["captions", str(root), "undo"]) == 0
    assert sorted(p.name for p in pics(root).glob("*.txt")) == ["blue2.txt"]
    assert (pics(root) / "blue2.txt").read_text() == "kept\n"
    assert main(["captions", str(root), "undo"]) == 0  # nothing before it: the run was one step


def test_append_adds_only_the_tags_a_caption_lacks(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1"], captions={"red1": "Long_Hair, red theme, me\nold variant\n"})
    assert caption(root, "--model", str(tagger), "--append") == 0
    assert (pics(root) / "red1.txt").read_text() == "Long_Hair, red theme, me, ^_^\nold variant\n"


def test_overwrite_replaces_the_first_line_and_keeps_the_rest(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["green1"], captions={"green1": "old\nignored line\n"})
    assert caption(root, "--model", str(tagger), "--overwrite") == 0
    assert (pics(root) / "green1.txt").read_text() == "green theme, long hair, ^_^\nignored line\n"


def test_the_subset_caption_separator_and_prefix_are_used(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["blue1"], trigger="sks", separator="|")
    assert caption(root, "--model", str(tagger), "--prefix", "photo|sks") == 0
    assert (pics(root) / "blue1.txt").read_text() == "sks| photo| blue theme| long hair| ^_^\n"


def test_thresholds_exclude_ratings_and_underscores_are_honoured(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    assert caption(root, "--model", str(tagger), "--character-threshold", "0.4", "--threshold", "0.85",
                   "--exclude", "red theme,^_^", "--rating", "--keep-underscores") == 0
    assert (pics(root) / "red1.txt").read_text() == "general, long_hair, judy_(character)\n"


def test_a_corrupt_image_is_reported_and_skipped_and_the_rest_captioned(tmp_path: Path, tagger: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1", "green1", "blue1"])
    (pics(root) / "green1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert caption(root, "--model", str(tagger), "--batch-size", "3") == 3
    assert sorted(p.name for p in pics(root).glob("*.txt")) == ["blue1.txt", "red1.txt"]
    out = capsys.readouterr().out
    assert "1 images skipped" in out and "green1.png: cannot read image" in out


def test_dry_run_prints_a_sample_and_writes_nothing(tmp_path: Path, tagger: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1", "blue1", "green1"])
    assert caption(root, "--model", str(tagger), "--dry-run", "--batch-size", "2") == 0
    captured = capsys.readouterr()
    assert not list(pics(root).glob("*.txt")) and not (root / ".lora-tui" / "review.json").exists()
    assert "+ blue theme, long hair, ^_^" in captured.out and "green1.png" in captured.out
    assert "red1.png" not in captured.out
    assert "dry run: 2 images captioned, nothing written" in captured.out


def test_json_lines_report_each_caption_as_it_lands(tmp_path: Path, tagger: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1", "blue1"])
    assert caption(root, "--model", str(tagger), "--json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events if e["event"] != "message"]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("caption") == 2
    assert events[-1]["written"] == 2 and events[-1]["undo_steps"] == 1
    landed = {Path(e["image"]).name: e["text"] for e in events if e["event"] == "caption"}
    assert landed["red1.png"] == "red theme, long hair, ^_^"


def test_ctrl_c_mid_run_keeps_what_finished_as_one_undo(tmp_path: Path, tagger: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = colour_project(tmp_path / "p", ["red1", "red2", "green1", "blue1", "blue2"])
    real = caption_run.caption_images

    def interrupt_third_batch(*args, **kw):
        captioner = args[2]
        calls = {"n": 0}
        original = captioner.run

        def run(inputs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return original(inputs)

        captioner.run = run
        return real(*args, **kw)

    monkeypatch.setattr(caption_run, "caption_images", interrupt_third_batch)
    assert caption(root, "--model", str(tagger), "--batch-size", "1") == 130
    assert sorted(p.name for p in pics(root).glob("*.txt")) == ["blue1.txt", "blue2.txt"]  # images go in name order
    assert ReviewMarks(root).with_mark(NEEDS_REVIEW) == {"data/pics/blue1.png", "data/pics/blue2.png"}
    assert main(["captions", str(root), "undo"]) == 0
    assert not list(pics(root).glob("*.txt"))


def test_nothing_to_do_says_how_to_caption_anyway(tmp_path: Path, tagger: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1"], captions={"red1": "done\n"})
    assert caption(root, "--model", str(tagger)) == 0
    assert "use --overwrite or --append" in capsys.readouterr().err


def test_append_knows_a_tag_the_caption_has_with_escaped_parentheses(tmp_path: Path, tagger: Path) -> None:
    """Captions made for A1111-style prompts escape parentheses: ``judy \\(character\\)`` is the same tag."""
    root = colour_project(tmp_path / "p", ["red1"], captions={"red1": "judy \\(character\\), me\n"})
    assert caption(root, "--model", str(tagger), "--append", "--character-threshold", "0.4") == 0
    assert (pics(root) / "red1.txt").read_text() == "judy \\(character\\), me, red theme, long hair, ^_^\n"


def test_exclude_takes_a_tag_written_with_escaped_parentheses(tmp_path: Path, tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    assert caption(root, "--model", str(tagger), "--character-threshold", "0.4",
                   "--exclude", "Judy_\\(Character\\)") == 0
    assert (pics(root) / "red1.txt").read_text() == "red theme, long hair, ^_^\n"

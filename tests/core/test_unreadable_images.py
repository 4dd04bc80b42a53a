"""Files that are not readable images (empty, no image header, cut short) are not images: left out of
caption counts and edits, of the steps math and of what any backend reads, and found by a plain check."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core import bulk, configs, lint, project, scan, staging, steps
from tests.helpers import image_bytes, write_images, write_project


def _project(root: Path, **subset: object) -> Path:
    """Two good images captioned with the trigger word, plus what the test adds to data/."""
    write_images(root / "data", [(512, 512)] * 2, captions={0: "judy, smile", 1: "judy, hat"})
    return write_project(root, [{"resolution": 512, "batch_size": 1, "subsets": [
        {"image_dir": "data", "trigger_word": "judy", **subset}]}])


def _codes(root: Path, **kw: object) -> dict[str, list[lint.Finding]]:
    out: dict[str, list[lint.Finding]] = {}
    for finding in lint.check_project(project.load(root), **kw).findings:
        out.setdefault(finding.code, []).append(finding)
    return out


def test_a_zero_byte_image_is_not_counted_as_a_caption_missing_the_trigger(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "data" / "zero.png").write_bytes(b"")
    found = _codes(root)
    assert "trigger-missing" not in found and "caption-missing" not in found
    assert any("zero.png" in f.message for f in found["image-unreadable"])


def test_a_truncated_image_is_left_out_of_the_steps_like_an_unreadable_one(tmp_path: Path) -> None:
    root = _project(tmp_path)
    data = image_bytes((512, 512), "JPEG")
    (root / "data" / "cut.jpg").write_bytes(data[: len(data) // 2])
    report = steps.compute(project.load(root))
    assert report.datasets[0].subsets[0].images == 2 and report.datasets[0].unsized == 1


def test_staging_keeps_unreadable_images_from_the_backend_and_says_which(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "data" / "zero.png").write_bytes(b"")
    (root / "data" / "zero.txt").write_text("judy")
    generated = configs.write(project.load(root))
    assert [p.name for p in generated.left_out.unreadable] == ["zero.png"]
    assert any("zero.png" in line and "not readable images" in line for line in generated.left_out.lines())
    import tomllib

    image_dir = Path(tomllib.loads(generated.dataset_text)["datasets"][0]["subsets"][0]["image_dir"])
    assert image_dir.parent == staging.default_root(project.load(root))
    assert sorted(p.name for p in image_dir.iterdir()) == ["img0000.png", "img0000.txt", "img0001.png",
                                                          "img0001.txt"]


def test_a_project_without_unreadable_images_is_not_staged(tmp_path: Path) -> None:
    root = _project(tmp_path)
    generated = configs.write(project.load(root))
    assert generated.left_out.paths == set() and str(root / "data") in generated.dataset_text


def test_caption_edits_leave_unreadable_files_alone(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "data" / "zero.png").write_bytes(b"")
    targets, dropped = bulk.readable_targets(bulk.select_targets(scan.scan_project(project.load(root))))
    assert [r.name for _, r in dropped] == ["zero.png"]
    preview = bulk.prepend_trigger(targets, "judy", create_missing=True)
    assert all(c.path.name != "zero.txt" for c in preview.changes)


def test_a_png_cut_inside_its_header_is_reported_not_a_crash(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "data" / "short.png").write_bytes(image_bytes((64, 64))[:20])  # signature + half an IHDR
    found = _codes(root)
    assert any("short.png" in f.message for f in found["image-unreadable"])


def test_a_zero_byte_image_in_a_metadata_subset_is_found_without_deep(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(image_bytes((512, 512)))
    (tmp_path / "imgs" / "zero.png").write_bytes(b"")
    meta = {name: {"caption": "judy", "image_size": [512, 512]} for name in ("a.png", "zero.png")}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "imgs", "metadata_file": "meta.json"}]}])
    corrupt = _codes(tmp_path)["image-corrupt"]
    assert corrupt[0].path == str(tmp_path / "imgs" / "zero.png") and "empty (0 bytes)" in corrupt[0].message

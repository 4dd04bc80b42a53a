"""`lora-tui metadata PROJECT fix-keys`: preview, apply, undo; JSON and JSONL; absolute keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tui.cli import main
from lora_tui.core import lint, project, steps
from tests.helpers import write_images, write_project


def _merge_style_project(root: Path, n: int = 3) -> Path:
    """What merge_captions_to_metadata.py makes without --full_path: keys are bare stems."""
    write_images(root / "imgs", [(64, 64)] * n, prefix="f")
    meta = root / "meta.json"
    meta.write_text(json.dumps({f"f{i:04d}": {"caption": f"photo {i}"} for i in range(n)}, indent=2) + "\n")
    write_project(root, [{"resolution": 64, "batch_size": 1, "enable_bucket": False,
                          "subsets": [{"image_dir": "imgs", "metadata_file": "meta.json"}]}])
    return meta


def _codes(root: Path) -> set[str]:
    return {f.code for f in lint.check_project(project.load(root)).findings}


def test_preview_names_each_key_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = _merge_style_project(tmp_path)
    before = meta.read_bytes()
    assert main(["metadata", str(tmp_path), "fix-keys"]) == 0
    out = capsys.readouterr().out
    assert "meta.json: f0000 → f0000.png" in out and "preview only" in out
    assert meta.read_bytes() == before


def test_fix_keys_repairs_the_extension_trap_and_undo_restores_the_file(tmp_path: Path) -> None:
    meta = _merge_style_project(tmp_path)
    before = meta.read_bytes()
    assert "metadata-key-extension" in _codes(tmp_path)
    assert main(["metadata", str(tmp_path), "fix-keys", "--yes"]) == 0
    data = json.loads(meta.read_text())
    assert list(data) == ["f0000.png", "f0001.png", "f0002.png"]
    assert data["f0001.png"] == {"caption": "photo 1"}
    assert "metadata-key-extension" not in _codes(tmp_path)
    assert steps.compute(project.load(tmp_path)).batches_per_epoch == 3
    assert main(["captions", str(tmp_path), "undo"]) == 0
    assert meta.read_bytes() == before


def test_absolute_keys_end_the_replacement_across_subsets(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_images(tmp_path / name, [(64, 64)] * 2, prefix="f", seed=ord(name))
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"image_path": f"f{i:04d}.png", "caption": name}) + "\n" for i in range(2)))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": False, "subsets": [
        {"image_dir": "a", "metadata_file": "a.jsonl"}, {"image_dir": "b", "metadata_file": "b.jsonl"}]}])
    assert steps.compute(project.load(tmp_path)).batches_per_epoch == 2
    assert main(["metadata", str(tmp_path), "fix-keys", "--absolute", "--yes"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rows[0] == {"image_path": str(tmp_path / "a" / "f0000.png"), "caption": "a"}
    assert steps.compute(project.load(tmp_path)).batches_per_epoch == 4
    assert "metadata-key-repeated" not in _codes(tmp_path)


def test_a_file_changed_after_the_preview_is_left_alone(tmp_path: Path) -> None:
    from lora_tui.core import scan
    from lora_tui.core.journal import Journal
    from lora_tui.core.metadata_fix import plan_fix_keys

    meta = _merge_style_project(tmp_path)
    proj = project.load(tmp_path)
    plan = plan_fix_keys(proj, scan.scan_project(proj))
    meta.write_text(json.dumps({"f0000": {"caption": "edited elsewhere"}}))
    outcome = plan.apply(Journal.for_project(proj))
    assert outcome is not None and outcome.left_alone
    assert json.loads(meta.read_text()) == {"f0000": {"caption": "edited elsewhere"}}

"""Lint of fine-tuning subsets: repeated keys across subsets and keys that name no file."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.cli import main
from lora_tui.core import lint, project
from tests.helpers import write_images, write_project


def _codes(root: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in lint.check_project(project.load(root)).findings:
        out.setdefault(f.code, []).append(f)
    return out


def _meta(path: Path, keys: list[str]) -> None:
    path.write_text(json.dumps({k: {"caption": "a dog"} for k in keys}))


def test_keys_repeated_across_subsets_of_a_dataset_are_an_error_naming_keys_subsets_and_fixes(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 3, prefix="f")
    write_images(tmp_path / "b", [(512, 512)] * 2, prefix="f", seed=1)
    _meta(tmp_path / "a.json", [f"f{i:04d}.png" for i in range(3)])
    _meta(tmp_path / "b.json", [f"f{i:04d}.png" for i in range(2)])
    write_project(tmp_path, [{"resolution": 512, "subsets": [
        {"image_dir": "a", "metadata_file": "a.json"}, {"image_dir": "b", "metadata_file": "b.json"}]}])
    [finding] = _codes(tmp_path)["metadata-key-repeated"]
    assert finding.severity == "error"
    assert "f0000.png, f0001.png" in finding.message and "2 images of subset a are replaced by b's" in finding.message
    assert "absolute keys" in finding.fix and "distinct names" in finding.fix and "[[datasets]]" in finding.fix


def test_the_same_names_in_separate_datasets_are_fine(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 2, prefix="f")
    write_images(tmp_path / "b", [(512, 512)] * 2, prefix="f", seed=1)
    _meta(tmp_path / "a.json", ["f0000.png", "f0001.png"])
    _meta(tmp_path / "b.json", ["f0000.png", "f0001.png"])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "metadata_file": "a.json"}]},
                             {"resolution": 512, "subsets": [{"image_dir": "b", "metadata_file": "b.json"}]}])
    assert "metadata-key-repeated" not in _codes(tmp_path)


def test_extensionless_keys_say_filenotfounderror_and_name_fix_keys(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 2, prefix="f")
    _meta(tmp_path / "a.json", ["f0000", "f0001"])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "metadata_file": "a.json"}]}])
    codes = _codes(tmp_path)
    [finding] = codes["metadata-key-extension"]
    assert "FileNotFoundError" in finding.message and "cached" in finding.message
    assert "fix-keys" in finding.fix
    assert "image-unreadable" not in codes and "nothing-to-train" not in codes


def test_keys_in_the_wrong_folder_are_an_error_of_their_own(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)], prefix="f")
    _meta(tmp_path / "a.json", ["f0000.png", "elsewhere/g.png"])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "metadata_file": "a.json"}]}])
    [finding] = _codes(tmp_path)["metadata-key-missing"]
    assert "elsewhere/g.png" in finding.message and "FileNotFoundError" in finding.message


def test_check_exits_2_on_the_extension_trap(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "a", [(512, 512)], prefix="f")
    _meta(tmp_path / "a.json", ["f0000"])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "metadata_file": "a.json"}]}])
    assert main(["check", str(tmp_path)]) == 2
    assert "metadata keys have no file extension" in capsys.readouterr().out

"""lora-tui new and the importers: projects that load, point at files in place, keep semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import project, scaffold, steps
from lora_tui.core.errors import ConfigError, ProjectError
from tests.helpers import write_images


def test_new_project_from_a_folder_of_images_points_at_it(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    write_images(src, [(512, 512)] * 27, captions={i: f"judy, photo {i}" for i in range(27)})
    before = sorted(p.name for p in src.iterdir())
    scaffold.write_project(scaffold.new_project(tmp_path / "judy", from_images=src))
    proj = project.load(tmp_path / "judy")
    assert proj.subsets[0].image_dir == src
    assert sorted(p.name for p in src.iterdir()) == before  # nothing copied, moved or written there
    assert proj.subsets[0].get("caption_extension") == ".txt"
    assert "class_tokens" not in proj.subsets[0].values  # captions exist
    assert proj.subsets[0].trigger_word == "judy"
    assert steps.compute(proj).total_steps > 0


def test_new_project_from_subfolders_makes_a_subset_each(tmp_path: Path) -> None:
    write_images(tmp_path / "src" / "5_judy woman", [(512, 512)] * 3)
    write_images(tmp_path / "src" / "poses", [(512, 512)] * 2)
    plan = scaffold.new_project(tmp_path / "p", from_images=tmp_path / "src")
    subs = plan.datasets[0]["subsets"]
    assert (subs[0]["name"], subs[0]["num_repeats"]) == ("5_judy woman", 5)
    assert subs[0]["class_tokens"] == "judy woman"


def test_new_project_without_images_is_ready_to_fill(tmp_path: Path) -> None:
    scaffold.write_project(scaffold.new_project(tmp_path / "empty", name="My LoRA"))
    proj = project.load(tmp_path / "empty")
    assert proj.name == "My LoRA" and (tmp_path / "empty" / "data" / "my_lora").is_dir()
    text = (tmp_path / "empty" / "lora-tui.toml").read_text()
    assert "# sidecar captions" in text  # comments explain the traps


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    scaffold.write_project(scaffold.new_project(tmp_path / "p"))
    with pytest.raises(ProjectError, match="already exists"):
        scaffold.write_project(scaffold.new_project(tmp_path / "p"))


def test_new_from_a_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(ProjectError, match="no images found"):
        scaffold.new_project(tmp_path / "p", from_images=tmp_path / "src")


def test_import_dataset_toml_with_absolute_dirs_outside(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "dog"
    write_images(outside, [(512, 512)] * 27)
    reg = tmp_path / "elsewhere" / "reg"
    write_images(reg, [(512, 512)] * 100, seed=4)
    toml = tmp_path / "dataset.toml"
    toml.write_text(f'''[general]
enable_bucket = true
[[datasets]]
resolution = 512
batch_size = 4
  [[datasets.subsets]]
  image_dir = "{outside}"
  num_repeats = 20
  class_tokens = "sks dog"
  [[datasets.subsets]]
  image_dir = "../elsewhere/reg"
  is_reg = true
''')
    (tmp_path / "cfg").mkdir()
    moved = tmp_path / "cfg" / "dataset.toml"
    toml.rename(moved)
    scaffold.write_project(scaffold.import_dataset_toml(moved, tmp_path / "proj"))
    proj = project.load(tmp_path / "proj")
    assert [s.image_dir for s in proj.subsets] == [outside, reg]
    # sd-scripts' default caption extension was .caption: the import keeps that meaning, explicitly
    assert proj.general["caption_extension"] == ".caption"
    proj.training["max_train_epochs"] = 10
    assert steps.compute(proj).steps_per_epoch == 270


def test_import_refuses_an_invalid_dataset_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = "a"\nnum_repeat = 1\n')
    with pytest.raises(ConfigError, match="num_repeat"):
        scaffold.import_dataset_toml(bad, tmp_path / "p")


def test_import_legacy_folders_with_sd_scripts_rules(tmp_path: Path) -> None:
    train = tmp_path / "train"
    write_images(train / "10_sks dog", [(512, 512)] * 3, captions={0: "sks dog, grass"})
    write_images(train / "3_sks_cat", [(512, 512)] * 2, seed=2)
    write_images(train / "notes", [(512, 512)], seed=3)
    write_images(train / "0_skip", [(512, 512)], seed=5)
    write_images(tmp_path / "reg" / "1_dog", [(512, 512)] * 4, seed=6)
    plan = scaffold.import_legacy(train, tmp_path / "p", tmp_path / "reg")
    subs = plan.datasets[0]["subsets"]
    assert [(s["num_repeats"], s["class_tokens"], s.get("is_reg", False)) for s in subs] == [
        (10, "sks dog", False), (3, "sks_cat", False), (1, "dog", True)]
    assert any("notes" in n for n in plan.notes) and any("0_skip" in n for n in plan.notes)
    scaffold.write_project(plan)
    assert len(project.load(tmp_path / "p").subsets) == 3


def test_import_legacy_of_a_wrong_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "flat", [(512, 512)])
    with pytest.raises(ProjectError, match="no '<repeats>_<name>' folders"):
        scaffold.import_legacy(tmp_path / "flat", tmp_path / "p")

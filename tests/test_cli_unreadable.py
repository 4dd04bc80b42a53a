"""The CLI with a zero-byte .png in the project, as a new user meets it: not an image anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib

from tests.helpers import write_images, write_project
from tests.test_cli import run


def _project(root: Path) -> Path:
    write_images(root / "data", [(512, 512)] * 2, captions={0: "judy, smile", 1: "judy, hat"})
    (root / "data" / "zero.png").write_bytes(b"")
    (root / "data" / "zero.txt").write_text("cat")
    (root / "data" / "empty.png").write_bytes(b"")  # no caption
    return write_project(root, [{"resolution": 512, "subsets": [{"image_dir": "data", "trigger_word": "judy"}]}])


def test_caption_stats_count_only_images(tmp_path: Path) -> None:
    proc = run("captions", str(_project(tmp_path)), "stats", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"judy": 2, "hat": 1, "smile": 1}
    assert "empty.png, zero.png" in proc.stderr and "not readable images" in proc.stderr


def test_trigger_create_missing_creates_no_caption_for_a_zero_byte_image(tmp_path: Path) -> None:
    root = _project(tmp_path)
    proc = run("captions", str(root), "trigger", "judy", "--create-missing", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "data" / "empty.txt").exists() and (root / "data" / "zero.txt").read_text() == "cat"
    assert "empty.png" in proc.stderr


def test_config_leaves_unreadable_images_out_and_says_so(tmp_path: Path) -> None:
    root = _project(tmp_path)
    proc = run("config", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "left out: 2 file(s) that are not readable images (empty.png, zero.png)" in proc.stdout
    data = json.loads(run("config", str(root), "--json").stdout)
    assert sorted(Path(u["path"]).name for u in data["left_out"]["unreadable"]) == ["empty.png", "zero.png"]
    config = tomllib.loads(Path(data["dataset_config"]).read_text())
    staged = Path(config["datasets"][0]["subsets"][0]["image_dir"])  # what sd-scripts will list
    assert staged != root / "data" and sorted(p.name for p in staged.glob("*.png")) == ["img0000.png", "img0001.png"]


def test_check_without_deep_names_a_zero_byte_image(tmp_path: Path) -> None:
    proc = run("check", str(_project(tmp_path)))
    assert proc.returncode == 2
    assert any("zero.png" in line and "empty (0 bytes)" in line for line in proc.stdout.splitlines())
    assert "trigger word" not in proc.stdout


def test_config_prints_the_builtin_trainers_command_for_a_builtin_project(simple_project: Path) -> None:
    proc = run("config", str(simple_project))
    assert proc.returncode == 0, proc.stderr
    assert "train_network.py" not in proc.stdout and "sd-scripts" not in proc.stdout
    assert f"lora-tui train {simple_project}" in proc.stdout and "-m lora_tui.train --dataset_config" in proc.stdout
    data = json.loads(run("config", str(simple_project), "--json").stdout)
    assert data["backend"] == "builtin" and data["backend_argv"][-5:] == [
        "lora_tui.train", "--dataset_config", data["dataset_config"], "--config_file", data["args_config"]]


def test_config_prints_the_sd_scripts_command_for_an_sd_scripts_project(simple_project: Path) -> None:
    file = simple_project / "lora-tui.toml"
    file.write_text(file.read_text().replace('[project]\nname = "proj"',
                                             '[project]\nname = "proj"\nbackend = "sd-scripts"\n'
                                             f'sd_scripts_dir = "{simple_project / "sd"}"'))
    proc = run("config", str(simple_project))
    assert proc.returncode == 0, proc.stderr
    assert f"{simple_project / 'sd' / 'train_network.py'} --config_file" in proc.stdout
    assert "lora_tui.train" not in proc.stdout

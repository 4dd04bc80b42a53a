"""The dataset facts in a LoRA's header (ss_datasets, ss_tag_frequency, ss_dataset_dirs) equal sd-scripts'.

`fixtures_ss_datasets/sd_scripts_metadata.json` is what kohya-ss/sd-scripts' train_network.py wrote for
`fixtures_ss_datasets/dataset.toml` (see the README there): three datasets with buckets on (several
buckets), off (taken from the --enable_bucket default), and on with every image in ONE bucket, reg
images, per-subset caption options, a folder used twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lora_tui.train.data.dataset import build_dataset
from lora_tui.train.network.file import build_metadata
from lora_tui.train.network.meta import dataset_facts
from tests.train.trainer_helpers import run_training, tiny_project, train_argv

FIXTURES = Path(__file__).with_name("fixtures_ss_datasets")


def _same_dataset(root: Path) -> Path:
    for item in json.loads((FIXTURES / "images.json").read_text()):
        path = root / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", tuple(item["size"]), (120, 60, 30)).save(path)
        if item["caption"] is not None:
            path.with_suffix(".txt").write_text(item["caption"], encoding="utf-8")
    config = root / "dataset.toml"
    config.write_text((FIXTURES / "dataset.toml").read_text(), encoding="utf-8")
    return config


def test_dataset_metadata_equals_what_sd_scripts_writes_for_the_same_config(tmp_path: Path) -> None:
    config = _same_dataset(tmp_path)
    data = build_dataset(config, seed=42, root=tmp_path)
    meta = build_metadata(dataset_facts(data))
    ours = {key: json.loads(meta[key]) for key in ("ss_datasets", "ss_tag_frequency", "ss_dataset_dirs")}
    theirs = json.loads((FIXTURES / "sd_scripts_metadata.json").read_text())
    for ds in theirs["ss_datasets"] + ours["ss_datasets"]:  # numpy's mean vs a plain sum: last-bit noise
        if ds["bucket_info"]:
            ds["bucket_info"]["mean_img_ar_error"] = pytest.approx(ds["bucket_info"]["mean_img_ar_error"])
    assert ours == theirs


def test_enable_bucket_is_the_setting_even_when_every_image_falls_in_one_bucket(tmp_path: Path) -> None:
    config = _same_dataset(tmp_path)
    data = build_dataset(config, seed=42, root=tmp_path)
    square = data.datasets[2]
    assert len(square.buckets) == 1  # all 256×256
    datasets = dataset_facts(data)["datasets"]
    assert [d["enable_bucket"] for d in datasets] == [True, False, True]
    assert (datasets[1]["min_bucket_reso"], datasets[1]["max_bucket_reso"], datasets[1]["bucket_info"]) == (
        None, None, None)


def test_a_trained_file_says_buckets_were_on_with_one_bucket(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The user's path: `lora-tui train` on square images with enable_bucket = true."""
    from lora_tui.train.network.file import load_lora

    root = tiny_project(tmp_path / "p", tiny_model_dir, kind="class", training={"max_train_steps": 1})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    meta = load_lora(root / "output" / "tiny.safetensors")[1]
    (ds,) = json.loads(meta["ss_datasets"])
    assert ds["enable_bucket"] is True and len(ds["bucket_info"]["buckets"]) == 1
    assert (ds["min_bucket_reso"], ds["max_bucket_reso"]) == (64, 128)
    assert "ss_enable_bucket" not in meta  # sd-scripts writes it only for runs without a dataset config


def test_fine_tuning_subsets_metadata_equals_what_sd_scripts_writes(tmp_path: Path) -> None:
    """metadata_file subsets (captions+tags, tags only) beside a DreamBooth dataset with reg images."""
    from tests.train.fixtures_ss_datasets_finetune.make_fixture import write_dataset

    here = FIXTURES.with_name("fixtures_ss_datasets_finetune")
    data = build_dataset(write_dataset(tmp_path), seed=42, root=tmp_path)
    meta = build_metadata(dataset_facts(data))
    ours = {key: json.loads(meta[key]) for key in ("ss_datasets", "ss_tag_frequency", "ss_dataset_dirs")}
    theirs = json.loads((here / "sd_scripts_metadata.json").read_text())
    for ds in theirs["ss_datasets"] + ours["ss_datasets"]:
        if ds["bucket_info"]:
            ds["bucket_info"]["mean_img_ar_error"] = pytest.approx(ds["bucket_info"]["mean_img_ar_error"])
    assert ours == theirs

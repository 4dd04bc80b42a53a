"""Steps math: the reference's worked examples, and random projects against the formulas."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from lora_tui.core import project, steps
from lora_tui.core.buckets import BucketPlan
from tests.helpers import write_images, write_project


def _steps(root: Path) -> steps.StepsReport:
    return steps.compute(project.load(root))


def test_27_images_20_repeats_batch_4_is_135_steps_per_epoch(simple_project: Path) -> None:
    report = _steps(simple_project)
    assert report.steps_per_epoch == 135
    assert report.total_steps == 1350
    assert report.summary_line() == (
        "27 images × 20 repeats = 540 → 135 steps/epoch at batch 4 × 10 epochs = 1,350 steps")


def test_100_reg_images_balance_to_the_training_samples_for_270_steps(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [(512, 512)] * 27)
    write_images(tmp_path / "reg", [(512, 512)] * 100, seed=1)
    write_project(tmp_path, [{"resolution": 512, "batch_size": 4, "subsets": [
        {"image_dir": "train", "num_repeats": 20, "class_tokens": "sks dog"},
        {"image_dir": "reg", "is_reg": True, "num_repeats": 1, "class_tokens": "dog"}]}])
    report = _steps(tmp_path)
    assert report.steps_per_epoch == 270
    reg = report.datasets[0].subsets[1]
    assert (reg.samples, reg.used_samples) == (100, 540)


def test_reg_first_pass_overshoot_gives_272_steps(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [(512, 512)] * 27)
    write_images(tmp_path / "reg", [(512, 512)] * 300, seed=2)
    write_project(tmp_path, [{"resolution": 512, "batch_size": 4, "subsets": [
        {"image_dir": "train", "num_repeats": 20},
        {"image_dir": "reg", "is_reg": True, "num_repeats": 7}]}])
    assert _steps(tmp_path).steps_per_epoch == 272


def test_more_reg_images_than_needed_leaves_the_rest_unused(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [(512, 512)] * 27)
    write_images(tmp_path / "reg", [(512, 512)] * 1000, seed=3)
    write_project(tmp_path, [{"resolution": 512, "batch_size": 4, "subsets": [
        {"image_dir": "train", "num_repeats": 20}, {"image_dir": "reg", "is_reg": True}]}])
    assert _steps(tmp_path).steps_per_epoch == 270


def test_buckets_round_up_separately(tmp_path: Path) -> None:
    write_images(tmp_path / "d", [(512, 512)] * 5 + [(384, 640)] * 22)
    write_project(tmp_path, [{"resolution": 512, "batch_size": 4, "enable_bucket": True,
                              "subsets": [{"image_dir": "d", "num_repeats": 1}]}])
    report = _steps(tmp_path)
    assert report.batches_per_epoch == 8  # ceil(5/4) + ceil(22/4), not ceil(27/4) = 7
    assert "per-bucket rounding adds 1" in report.breakdown()


def test_gradient_accumulation_2_gives_68_steps_and_680_total(simple_project: Path) -> None:
    proj = project.load(simple_project)
    proj.training["gradient_accumulation_steps"] = 2
    report = steps.compute(proj)
    assert (report.steps_per_epoch, report.total_steps) == (68, 680)


def test_two_gpus_split_the_batches(simple_project: Path) -> None:
    proj = project.load(simple_project)
    proj.launch["num_processes"] = 2
    report = steps.compute(proj)
    assert (report.batches_per_process, report.steps_per_epoch, report.total_steps) == (68, 68, 680)


def test_max_train_steps_gives_partial_last_epoch(simple_project: Path) -> None:
    proj = project.load(simple_project)
    del proj.training["max_train_epochs"]
    proj.training["max_train_steps"] = 1000
    report = steps.compute(proj)
    assert (report.total_steps, report.epochs) == (1000, 8)


def test_without_epochs_or_steps_sd_scripts_trains_1600(simple_project: Path) -> None:
    proj = project.load(simple_project)
    del proj.training["max_train_epochs"]
    assert steps.compute(proj).total_steps == 1600


def test_subset_with_zero_repeats_is_ignored(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 4)
    write_images(tmp_path / "b", [(512, 512)] * 4, seed=5)
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "num_repeats": 2},
                                                             {"image_dir": "b", "num_repeats": 0}]}])
    report = _steps(tmp_path)
    assert report.batches_per_epoch == 8
    assert report.datasets[0].subsets[1].skipped


def test_batch_size_falls_back_to_train_batch_size(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 8)
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a"}]}],
                  training={"network_module": "networks.lora", "train_batch_size": 4, "max_train_epochs": 1})
    assert _steps(tmp_path).batches_per_epoch == 2


def test_datasets_add_up(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 10)
    write_project(tmp_path, [
        {"resolution": 512, "batch_size": 3, "subsets": [{"image_dir": "a"}]},
        {"resolution": 768, "batch_size": 2, "subsets": [{"image_dir": "a"}]}])
    assert _steps(tmp_path).batches_per_epoch == 4 + 5


def test_histogram_lists_every_bucket(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512), (512, 768), (768, 512)])
    write_project(tmp_path, [{"resolution": 512, "enable_bucket": True, "subsets": [{"image_dir": "a"}]}])
    text = _steps(tmp_path).histogram()
    for bucket in ("512×512", "384×640", "640×384"):
        assert bucket in text


def _formula_batches(sizes: list[tuple[int, int]], repeats: int, reg_sizes: list[tuple[int, int]],
                     reg_repeats: int, batch: int, plan: BucketPlan) -> int:
    """Independent re-statement of reference §1.6 + §2.3 for the property test."""
    counts: Counter = Counter()
    for s in sizes:
        counts[plan.select(*s).bucket] += repeats
    target = len(sizes) * repeats
    reg_counts = [0] * len(reg_sizes)
    n, i, first = 0, 0, True
    while target and reg_sizes and n < target:
        reg_counts[i] += reg_repeats if first else 1
        n += reg_repeats if first else 1
        i += 1
        if i == len(reg_sizes):
            i, first = 0, False
    for s, c in zip(reg_sizes, reg_counts):
        if c:
            counts[plan.select(*s).bucket] += c
    return sum(math.ceil(c / batch) for c in counts.values())


@pytest.mark.parametrize("seed", range(12))
def test_random_projects_match_the_formulas(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    sizes = [(rng.choice([256, 384, 512, 640, 768, 1024, 333]), rng.choice([256, 384, 512, 640, 768, 1024, 777]))
             for _ in range(rng.randrange(1, 15))]
    reg_sizes = [(512, 512)] * rng.randrange(0, 12)
    repeats, reg_repeats, batch = rng.randrange(1, 12), rng.randrange(1, 5), rng.randrange(1, 6)
    write_images(tmp_path / "t", sizes)
    subsets = [{"image_dir": "t", "num_repeats": repeats}]
    if reg_sizes:
        write_images(tmp_path / "r", reg_sizes, seed=9)
        subsets.append({"image_dir": "r", "is_reg": True, "num_repeats": reg_repeats})
    write_project(tmp_path, [{"resolution": 512, "batch_size": batch, "enable_bucket": True, "subsets": subsets}])
    plan = BucketPlan((512, 512))
    expected = _formula_batches(sizes, repeats, reg_sizes, reg_repeats, batch, plan)
    assert _steps(tmp_path).batches_per_epoch == expected


def test_images_under_one_bucket_step_without_upscale_block_the_config(tmp_path: Path) -> None:
    from lora_tui.core import configs
    from lora_tui.core.errors import ConfigError

    write_images(tmp_path / "a", [(40, 40), (512, 512)])
    write_project(tmp_path, [{"resolution": 512, "enable_bucket": True, "bucket_no_upscale": True,
                              "subsets": [{"image_dir": "a", "class_tokens": "x"}]}])
    proj = project.load(tmp_path)
    report = steps.compute(proj)
    assert report.batches_per_epoch == 1 and "cannot bucket" in report.breakdown()
    with pytest.raises(ConfigError, match="sd-scripts cannot bucket them"):
        configs.write(proj, report)


def test_tiny_images_are_fine_when_bucketing_is_off(tmp_path: Path) -> None:
    from lora_tui.core import lint

    write_images(tmp_path / "a", [(40, 40)])
    write_project(tmp_path, [{"resolution": 512, "enable_bucket": False, "bucket_no_upscale": True,
                              "subsets": [{"image_dir": "a", "class_tokens": "x"}]}])
    proj = project.load(tmp_path)
    assert steps.compute(proj).blocking_problem() is None
    assert not [f for f in lint.check_project(proj).findings if f.code == "image-tiny"]


def test_validation_split_holds_images_out_of_training(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)] * 10)
    write_images(tmp_path / "r", [(512, 512)] * 10, seed=7)
    write_project(tmp_path, [{"resolution": 512, "batch_size": 1, "validation_split": 0.25, "subsets": [
        {"image_dir": "a"}, {"image_dir": "r", "is_reg": True}]}])
    report = _steps(tmp_path)
    # ceil(10 × 0.75) = 8 training images; reg images are never split and balance to 8
    assert report.batches_per_epoch == 16
    assert "2 images held out" in report.breakdown()


def test_excluded_images_are_left_out_of_steps_and_configs(simple_project: Path) -> None:
    from lora_tui.core import configs
    from lora_tui.core.review import ReviewMarks
    from lora_tui.core.tomlio import parse_plain

    ReviewMarks(simple_project).set([simple_project / "data" / "dog" / "img0003.png"], "excluded", True)
    proj = project.load(simple_project)
    report = steps.compute(proj)
    assert report.batches_per_epoch == 130  # 26 × 20 / 4
    assert "1 images marked excluded" in report.breakdown()
    generated = configs.write(proj, report)
    image_dir = Path(parse_plain(generated.dataset_config)["datasets"][0]["subsets"][0]["image_dir"])
    assert image_dir.parent == simple_project.resolve() / ".lora-tui" / "staging"
    names = sorted(p.name for p in image_dir.iterdir())
    assert "img0003.png" not in names and "img0003.txt" not in names and len(names) == 52
    assert (image_dir / "img0000.png").resolve() == (simple_project / "data" / "dog" / "img0000.png").resolve()
    assert (simple_project / "data" / "dog" / "img0003.png").exists()  # the user's files are untouched

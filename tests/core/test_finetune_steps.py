"""Fine-tuning datasets: the steps count what sd-scripts' FineTuningDataset really loads.

The oracle below is sd-scripts' rule written out independently: per dataset one dict keyed by the
metadata key as written, later subsets overwriting earlier ones, then one bucket (enable_bucket off)
rounded up to whole batches.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from lora_tui.cli import main
from lora_tui.core import project, steps
from tests.helpers import write_images, write_project


def _oracle(datasets: list[dict]) -> int:
    batches = 0
    for ds in datasets:
        if ds["kind"] == "dreambooth":
            batches += math.ceil(ds["images"] * ds["repeats"] / ds["batch"])
            continue
        image_data: dict[str, int] = {}
        seen = set()
        for sub in ds["subsets"]:
            if sub["meta"] in seen:
                continue
            seen.add(sub["meta"])
            for key in sub["keys"]:
                image_data[key] = sub["repeats"]
        batches += math.ceil(sum(image_data.values()) / ds["batch"])
    return batches


def _random_project(root: Path, rng: random.Random) -> list[dict]:
    spec, datasets = [], []
    for d in range(rng.randint(1, 3)):
        batch = rng.randint(1, 4)
        if d > 0 and rng.random() < 0.4:  # a DreamBooth dataset beside the fine-tuning ones
            n, repeats = rng.randint(1, 6), rng.randint(1, 5)
            write_images(root / f"db{d}", [(64, 64)] * n)
            datasets.append({"resolution": 64, "batch_size": batch, "enable_bucket": False,
                             "subsets": [{"image_dir": f"db{d}", "num_repeats": repeats}]})
            spec.append({"kind": "dreambooth", "images": n, "repeats": repeats, "batch": batch})
            continue
        absolute = rng.random() < 0.3
        subsets, sub_spec = [], []
        for s in range(rng.randint(1, 3)):
            folder = root / f"ft{d}_{s}"
            n = rng.randint(1, 8)
            paths = write_images(folder, [(64, 64)] * n, prefix="f")  # same names in every folder
            keys = [str(p) if absolute else p.name for p in paths]
            meta = f"meta{d}_{s}.json"
            (root / meta).write_text(json.dumps({k: {"caption": f"c{d}{s}"} for k in keys}))
            repeats = rng.randint(1, 4)
            subsets.append({"image_dir": folder.name, "metadata_file": meta, "num_repeats": repeats})
            sub_spec.append({"meta": meta, "keys": keys, "repeats": repeats})
        datasets.append({"resolution": 64, "batch_size": batch, "enable_bucket": False, "subsets": subsets})
        spec.append({"kind": "finetune", "subsets": sub_spec, "batch": batch})
    write_project(root, datasets)
    return spec


@pytest.mark.parametrize("seed", range(12))
def test_random_finetune_projects_count_what_sd_scripts_loads(tmp_path: Path, seed: int) -> None:
    spec = _random_project(tmp_path, random.Random(seed))
    report = steps.compute(project.load(tmp_path))
    assert report.batches_per_epoch == _oracle(spec)


def _two_subsets_same_names(root: Path) -> None:
    write_images(root / "a", [(64, 64)] * 3, prefix="f")
    write_images(root / "b", [(64, 64)] * 2, prefix="f")
    (root / "a.json").write_text(json.dumps({f"f{i:04d}.png": {"caption": "a"} for i in range(3)}))
    (root / "b.json").write_text(json.dumps({f"f{i:04d}.png": {"caption": "b"} for i in range(2)}))
    write_project(root, [{"resolution": 64, "batch_size": 1, "enable_bucket": False, "subsets": [
        {"image_dir": "a", "metadata_file": "a.json"},
        {"image_dir": "b", "metadata_file": "b.json"}]}])


def test_a_later_subsets_same_keys_replace_the_earlier_images(tmp_path: Path) -> None:
    _two_subsets_same_names(tmp_path)
    report = steps.compute(project.load(tmp_path))
    first, second = report.datasets[0].subsets
    assert (first.images, second.images, report.batches_per_epoch) == (1, 2, 3)
    assert first.replaced_by == {second.name: 2}


def test_steps_cli_says_which_images_are_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _two_subsets_same_names(tmp_path)
    assert main(["steps", str(tmp_path)]) == 0
    first, second = project.load(tmp_path).datasets[0].subsets
    assert (f"2 images of subset {first.name} are replaced by {second.name}'s entries with the same names "
            "and will not train") in capsys.readouterr().out


def test_distinct_absolute_keys_all_train(tmp_path: Path) -> None:
    a = write_images(tmp_path / "a", [(64, 64)] * 3, prefix="f")
    b = write_images(tmp_path / "b", [(64, 64)] * 2, prefix="f")
    (tmp_path / "a.json").write_text(json.dumps({str(p): {"caption": "a"} for p in a}))
    (tmp_path / "b.json").write_text(json.dumps({str(p): {"caption": "b"} for p in b}))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": False, "subsets": [
        {"image_dir": "a", "metadata_file": "a.json"}, {"image_dir": "b", "metadata_file": "b.json"}]}])
    assert steps.compute(project.load(tmp_path)).batches_per_epoch == 5


def test_extensionless_keys_are_the_blocking_problem_not_nothing_to_train(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)] * 2, prefix="f")
    (tmp_path / "a.json").write_text(json.dumps({f"f{i:04d}": {"caption": "a"} for i in range(2)}))
    write_project(tmp_path, [{"resolution": 64, "subsets": [{"image_dir": "a", "metadata_file": "a.json"}]}])
    problem = steps.compute(project.load(tmp_path)).blocking_problem() or ""
    assert "FileNotFoundError" in problem and "fix-keys" in problem and "nothing to train" not in problem


def test_a_jsonl_image_path_listed_twice_counts_once(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)] * 2, prefix="f")
    rows = [{"image_path": "f0000.png", "caption": "x"}, {"image_path": "f0001.png", "caption": "y"},
            {"image_path": "f0000.png", "caption": "z"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": False,
                              "subsets": [{"image_dir": "a", "metadata_file": "a.jsonl"}]}])
    report = steps.compute(project.load(tmp_path))
    assert (report.datasets[0].subsets[0].images, report.batches_per_epoch) == (2, 2)

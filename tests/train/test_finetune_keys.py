"""The built-in trainer loads fine-tuning subsets as sd-scripts does: one entry per metadata key
and dataset, the later subset's entry replacing an earlier one with the same key."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.train.data.dataset import build_dataset
from tests.helpers import write_images
from tests.train.test_data import write_config


def test_a_key_repeated_across_subsets_trains_once_with_the_later_caption_and_repeats(tmp_path: Path) -> None:
    for name, n in (("a", 3), ("b", 2)):
        write_images(tmp_path / name, [(64, 64)] * n, prefix="f", seed=n)
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {f"f{i:04d}.png": {"caption": f"{name} {i}", "tags": "grass"} for i in range(n)}))
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "batch_size": 1, "subsets": [
        {"image_dir": str(tmp_path / "a"), "metadata_file": str(tmp_path / "a.json"), "num_repeats": 3},
        {"image_dir": str(tmp_path / "b"), "metadata_file": str(tmp_path / "b.json"), "num_repeats": 1}]}])
    entries = build_dataset(cfg, seed=0).datasets[0].entries
    got = sorted((Path(e.key).parent.name, Path(e.key).name, e.caption, e.repeats) for e in entries)
    assert got == [("a", "f0002.png", "a 2,grass", 3), ("b", "f0000.png", "b 0,grass", 1),
                   ("b", "f0001.png", "b 1,grass", 1)]

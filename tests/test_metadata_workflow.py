"""A new user's fine-tuning workflow end to end: a folder captioned by sd-scripts'
merge_captions_to_metadata.py (keys are bare stems), imported, checked, repaired, counted, reviewed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lora_tui.cli import main
from lora_tui.core import project, steps
from tests.helpers import write_images


def _merge_captions(folder: Path, out: Path, *, sizes: bool) -> None:
    """What merge_captions_to_metadata.py writes without --full_path (plus, optionally, what
    prepare_buckets_latents.py adds: train_resolution, legacy .npz latents) — and image_size."""
    meta = {}
    for image in sorted(folder.glob("*.png")):
        entry = {"caption": (folder / (image.stem + ".caption")).read_text().strip()}
        if sizes:
            entry["image_size"] = [64, 64]
            entry["train_resolution"] = [64, 64]
            (folder / (image.stem + ".npz")).write_bytes(b"not read by lora-tui")
        meta[image.stem] = entry
    out.write_text(json.dumps(meta, indent=2))


def _folder(root: Path, name: str, n: int, seed: int) -> Path:
    folder = root / name
    write_images(folder, [(64, 64)] * n, prefix="f", seed=seed,
                 captions={i: f"{name} photo {i}" for i in range(n)}, caption_ext=".caption")
    return folder


@pytest.mark.parametrize("sizes", [False, True])
def test_import_check_fix_keys_steps_and_review(tmp_path: Path, sizes: bool,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    _merge_captions(_folder(src, "a", 5, 1), src / "a.json", sizes=sizes)
    _merge_captions(_folder(src, "b", 3, 2), src / "b.json", sizes=sizes)  # f0000..f0002 again
    (src / "dataset.toml").write_text(
        "[[datasets]]\nresolution = 64\nbatch_size = 2\nenable_bucket = false\n"
        '[[datasets.subsets]]\nimage_dir = "a"\nmetadata_file = "a.json"\nnum_repeats = 3\n'
        '[[datasets.subsets]]\nimage_dir = "b"\nmetadata_file = "b.json"\nnum_repeats = 1\n')
    proj = tmp_path / "proj"
    assert main(["import", str(src / "dataset.toml"), "--into", str(proj)]) == 0
    capsys.readouterr()

    assert main(["check", str(proj)]) == 2
    out = capsys.readouterr().out
    trap = "but their latents are cached to disk" if sizes else "metadata keys have no file extension"
    assert trap in out and "FileNotFoundError" in out and f"lora-tui metadata {proj} fix-keys" in out

    before = steps.compute(project.load(proj))
    if sizes:  # sd-scripts trains from the cached latents: the same count as after the fix
        assert before.batches_per_epoch == math.ceil((2 * 3 + 3 * 1) / 2)
    else:
        assert "FileNotFoundError" in (before.blocking_problem() or "")

    assert main(["metadata", str(proj), "fix-keys", "--yes"]) == 0
    assert list(json.loads((src / "b.json").read_text())) == ["f0000.png", "f0001.png", "f0002.png"]
    capsys.readouterr()
    main(["check", str(proj)])
    out = capsys.readouterr().out
    assert "FileNotFoundError" not in out
    assert "both list f0000.png, f0001.png, f0002.png" in out  # the other trap, still there to see

    # sd-scripts: one dict per dataset keyed by metadata key; b's f0000..f0002 replace a's
    samples = 2 * 3 + 3 * 1
    assert main(["steps", str(proj), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batches_per_epoch"] == math.ceil(samples / 2)

    assert main(["captions", str(proj), "show"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert f"{src / 'a' / 'f0004.png'}\ta photo 4" in shown and len(shown) == 8

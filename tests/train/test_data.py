"""Training data: sd-scripts' registration, batching, order, augmentation and latent cache."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lora_tui.core import dataset_toml, project, steps
from lora_tui.core.errors import ConfigError, TrainError
from lora_tui.train.data.dataset import TrainData, build_dataset
from lora_tui.train.data.images import crop_ltrb, load_rgb, resize_and_crop
from tests.helpers import write_images, write_project

BUCKETS = {"resolution": 128, "enable_bucket": True, "min_bucket_reso": 64, "max_bucket_reso": 256}


def write_config(path: Path, datasets: list[dict[str, Any]], general: dict[str, Any] | None = None) -> Path:
    general = {"caption_extension": ".txt", **(general or {})}
    path.write_text(dataset_toml.render(general, datasets), encoding="utf-8")
    return path


def half_image(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """Left half red, right half blue: flips and crops are visible."""
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def epoch_keys(data: TrainData, epoch: int) -> list[list[str]]:
    return [[e.key for e in data.batch_entries(epoch, p)[2]] for p in range(len(data))]


# --- the batch count is the steps math ---------------------------------------------------------------------

MIXED = [(64, 64), (96, 48), (48, 96), (80, 80), (32, 96), (96, 32), (64, 48)]

PROJECTS = {
    "square_batch1": [{"resolution": 64, "batch_size": 1, "subsets": [{"image_dir": "a", "num_repeats": 3}]}],
    "mixed_batch3": [{**BUCKETS, "batch_size": 3, "subsets": [{"image_dir": "m", "num_repeats": 2}]}],
    "mixed_reg_batch4": [{**BUCKETS, "batch_size": 4, "subsets": [
        {"image_dir": "m", "num_repeats": 3}, {"image_dir": "r", "is_reg": True, "num_repeats": 2}]}],
    "two_datasets_batch2": [
        {**BUCKETS, "batch_size": 2, "subsets": [{"image_dir": "m"}, {"image_dir": "a", "num_repeats": 2}]},
        {"resolution": [64, 128], "batch_size": 4, "subsets": [
            {"image_dir": "a", "num_repeats": 5}, {"image_dir": "r", "is_reg": True, "num_repeats": 9}]}],
    "no_upscale_batch3": [{**BUCKETS, "bucket_no_upscale": True, "batch_size": 3, "subsets": [
        {"image_dir": "b", "num_repeats": 2}, {"image_dir": "missing"}, {"image_dir": "a", "num_repeats": 0}]}],
}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_images(root / "a", [(64, 64)] * 3, captions={0: "sks, dog"})
    write_images(root / "m", MIXED, seed=1)
    write_images(root / "r", [(64, 64), (96, 48), (48, 96)], seed=2)
    write_images(root / "b", [(200, 130), (150, 150), (64, 200), (140, 70)], seed=3)
    return root


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_batches_per_epoch_equal_core_steps(name: str, image_root: Path, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", PROJECTS[name])
    for sub in ("a", "b", "m", "r"):
        (root / sub).symlink_to(image_root / sub)
    proj = project.load(root)
    report = steps.compute(proj)
    config = project.sd_scripts_dataset_config(proj)
    path = write_config(tmp_path / "d.toml", config["datasets"], config["general"])
    data = build_dataset(path, seed=3)
    assert len(data) == report.batches_per_epoch > 0
    assert [Counter({b: len(i) for b, i in d.buckets.items()}) for d in data.datasets] == \
        [d.buckets for d in report.datasets if d.buckets]
    for epoch in (1, 2):  # every batch is one bucket and at most batch_size long
        for p in range(len(data)):
            ds, bucket, entries = data.batch_entries(epoch, p)
            assert 0 < len(entries) <= ds.batch_size and {e.bucket for e in entries} == {bucket}


def test_every_image_appears_repeats_times_and_reg_is_balanced(tmp_path: Path) -> None:
    train = write_images(tmp_path / "t", [(64, 64), (64, 64)])
    reg = write_images(tmp_path / "r", [(64, 64)] * 4, seed=5)
    many = write_images(tmp_path / "r2", [(64, 64)] * 3, seed=6)
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "batch_size": 3, "subsets": [
        {"image_dir": str(tmp_path / "t"), "num_repeats": 3},
        {"image_dir": str(tmp_path / "r"), "is_reg": True}]}])
    data = build_dataset(cfg, seed=0, prior_loss_weight=0.25)
    for epoch in (1, 2):
        counts = Counter(k for batch in epoch_keys(data, epoch) for k in batch)
        assert [counts[str(p)] for p in train] == [3, 3]
        assert [counts[str(p)] for p in reg] == [2, 2, 1, 1]  # 6 train samples: one pass, then +1 in order
    assert (data.num_train_images, data.num_reg_images, len(data)) == (6, 4, 4)
    batch = data[0]
    assert batch["loss_weights"].tolist() == [0.25 if r else 1.0 for r in batch["is_reg"]]
    # reg repeats overshooting on the first pass leave later reg images unused
    cfg = write_config(tmp_path / "d2.toml", [{"resolution": 64, "subsets": [
        {"image_dir": str(tmp_path / "t"), "num_repeats": 3},
        {"image_dir": str(tmp_path / "r2"), "is_reg": True, "num_repeats": 4}]}])
    counts = Counter(k for batch in epoch_keys(build_dataset(cfg, seed=0), 1) for k in batch)
    assert [counts[str(p)] for p in many] == [4, 4, 0]


# --- batches -----------------------------------------------------------------------------------------------

def test_a_batch_holds_images_captions_and_metadata(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(96, 48), (96, 48), (48, 96)], captions={0: "sks, red", 2: "tall"})
    cfg = write_config(tmp_path / "d.toml", [{**BUCKETS, "batch_size": 2, "network_multiplier": 0.5, "subsets": [
        {"image_dir": str(tmp_path / "a"), "class_tokens": "sks dog"}]}])
    data = build_dataset(cfg, seed=1)
    by_key = {e.key: e for e in data.datasets[0].entries}
    assert sorted((e.caption, e.caption_source) for e in by_key.values()) == [
        ("sks dog", "class_tokens"), ("sks, red", "file"), ("tall", "file")]
    for p in range(len(data)):
        batch = data[p]
        w, h = batch["bucket"]
        assert batch["images"].shape == (len(batch["keys"]), 3, h, w) and batch["latents"] is None
        assert batch["images"].min() >= -1.0 and batch["images"].max() <= 1.0
        assert batch["captions"] == [by_key[k].caption for k in batch["keys"]]
        assert batch["network_multipliers"].tolist() == [0.5] * len(batch["keys"])
        assert batch["target_sizes_hw"][0] == (h, w) and batch["epoch"] == 1 and batch["position"] == p


def test_order_is_a_pure_function_of_seed_and_epoch(tmp_path: Path) -> None:
    write_images(tmp_path / "a", MIXED * 2, captions={i: f"t{i}, a, b, c" for i in range(14)})
    cfg = write_config(tmp_path / "d.toml", [{**BUCKETS, "batch_size": 2, "subsets": [
        {"image_dir": str(tmp_path / "a"), "num_repeats": 2, "shuffle_caption": True}]}])
    one, two, other = build_dataset(cfg, seed=7), build_dataset(cfg, seed=7), build_dataset(cfg, seed=8)
    assert epoch_keys(one, 1) == epoch_keys(two, 1) and epoch_keys(one, 3) == epoch_keys(two, 3)
    assert epoch_keys(one, 1) != epoch_keys(one, 2)
    assert epoch_keys(one, 1) != epoch_keys(other, 1)
    assert list(one.debug_lines(1)) == list(two.debug_lines(1))
    assert one[0]["captions"] == two[0]["captions"]


def test_resume_from_state_dict_continues_the_same_data(tmp_path: Path) -> None:
    write_images(tmp_path / "a", MIXED, captions={i: f"t{i}, a, b, c" for i in range(7)})
    cfg = write_config(tmp_path / "d.toml", [{**BUCKETS, "batch_size": 2, "subsets": [
        {"image_dir": str(tmp_path / "a"), "num_repeats": 2, "shuffle_caption": True, "flip_aug": True}]}])

    def run(data: TrainData, stop: int | None = None) -> list[tuple[list[str], list[str], float]]:
        out = []
        for batch in data.loader():
            out.append((batch["keys"], batch["captions"], float(batch["images"].sum())))
            data.mark_done(batch)
            if stop is not None and len(out) == stop:
                break
        return out

    full = build_dataset(cfg, seed=11)
    full.set_epoch(2)
    expected = run(full)
    first = build_dataset(cfg, seed=11)
    first.set_epoch(2)
    head = run(first, stop=3)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = build_dataset(cfg, seed=999)  # the saved seed wins
    resumed.load_state_dict(state)
    assert len(resumed.loader()) == len(full) - 3
    assert head + run(resumed) == expected


def test_worker_processes_give_the_same_batches(tmp_path: Path) -> None:
    write_images(tmp_path / "a", MIXED[:4], captions={i: f"t{i}, a, b" for i in range(4)})
    cfg = write_config(tmp_path / "d.toml", [{**BUCKETS, "subsets": [
        {"image_dir": str(tmp_path / "a"), "shuffle_caption": True, "flip_aug": True}]}])
    data = build_dataset(cfg, seed=2)
    loader = data.loader(num_workers=2, persistent_workers=True)
    for epoch in (1, 2):
        data.set_epoch(epoch)
        got = [(b["keys"], b["captions"], b["flipped"], float(b["images"].sum())) for b in loader]
        want = [(b["keys"], b["captions"], b["flipped"], float(b["images"].sum()))
                for b in (data[p] for p in range(len(data)))]
        assert got == want and {b[0][0] for b in got}


# --- images and augmentation ----------------------------------------------------------------------------

def test_resize_covers_the_bucket_and_crops_the_centre(tmp_path: Path) -> None:
    assert crop_ltrb((384, 640), (512, 768)) == (0, 32, 384, 608)  # the reference's 512×768 → (384, 640)
    img = Image.new("RGB", (120, 40), (0, 255, 0))
    img.paste((255, 0, 0), (40, 0, 80, 40))  # red centre third
    out = np.asarray(resize_and_crop(img, (64, 64), (192, 64)))
    assert out.shape == (64, 64, 3) and (out[:, :, 0] > 200).all()  # only the centre survives
    crops = {np.asarray(resize_and_crop(img, (40, 40), (120, 40), random_crop=True,
                                        rng=random.Random(s)))[:, :, 1].mean() for s in range(20)}
    assert len(crops) > 2  # random_crop moves the window


def test_exif_orientation_is_ignored_like_sd_scripts(tmp_path: Path) -> None:
    img = Image.new("RGB", (64, 32), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").size == (64, 32)
    Image.new("L", (8, 8), 128).save(tmp_path / "g.png")
    assert load_rgb(tmp_path / "g.png").mode == "RGB"


def test_flip_and_color_aug(tmp_path: Path) -> None:
    for i in range(4):
        half_image(tmp_path / "a" / f"{i}.png")
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "batch_size": 4, "subsets": [
        {"image_dir": str(tmp_path / "a"), "num_repeats": 4, "flip_aug": True}]}])
    data = build_dataset(cfg, seed=0)
    flips = []
    for p in range(len(data)):
        batch = data[p]
        for img, flipped in zip(batch["images"], batch["flipped"]):
            assert (img[0, :, 0] > 0.9).all() != flipped  # red on the left unless flipped
            flips.append(flipped)
    assert 0 < sum(flips) < len(flips)
    cfg = write_config(tmp_path / "c.toml", [{"resolution": 64, "batch_size": 4, "subsets": [
        {"image_dir": str(tmp_path / "a"), "num_repeats": 8, "color_aug": True}]}])
    data = build_dataset(cfg, seed=0)
    colors = {tuple(data[p]["images"][i][:, 0, 0].tolist()) for p in range(len(data)) for i in range(4)}
    assert len(colors) > 1  # some samples had their hue or gamma changed


# --- sources of images and captions ------------------------------------------------------------------------

def test_metadata_subset_captions(tmp_path: Path) -> None:
    write_images(tmp_path / "ft", [(64, 64), (64, 64)])
    meta = {"img0000.png": {"caption": "a photo\nanother photo", "tags": "dog, grass"},
            str(tmp_path / "ft" / "img0001.png"): {"caption": "plain", "image_size": [64, 64]}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "subsets": [
        {"image_dir": str(tmp_path / "ft"), "metadata_file": str(tmp_path / "meta.json"), "num_repeats": 2}]}])
    data = build_dataset(cfg, seed=0)
    got = sorted((Path(e.key).name, e.caption, e.caption_source, e.repeats) for e in data.datasets[0].entries)
    assert got == [("img0000.png", "a photo\nanother photo,dog, grass", "metadata", 2),
                   ("img0001.png", "plain", "metadata", 2)]
    assert {c for p in range(len(data)) for c in data[p]["captions"]} == {"a photo", "plain"}
    cfg = write_config(tmp_path / "w.toml", [{"resolution": 64, "subsets": [
        {"image_dir": str(tmp_path / "ft"), "metadata_file": str(tmp_path / "meta.json"), "enable_wildcard": True}]}])
    entries = build_dataset(cfg, seed=0).datasets[0].entries
    assert sorted(e.caption for e in entries) == ["a photo,dog, grass\nanother photo,dog, grass", "plain"]


def test_cli_fallbacks_and_caption_extension_default(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)], captions={0: "from txt"})
    (tmp_path / "a" / "img0000.caption").write_text("from caption")
    path = tmp_path / "d.toml"
    path.write_text(f'[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{tmp_path / "a"}"\n')
    with pytest.raises(ConfigError, match="resolution"):
        build_dataset(path, seed=0)
    data = build_dataset(path, seed=0, args={"resolution": "64", "train_batch_size": 2})
    assert data.datasets[0].entries[0].caption == "from caption"  # sd-scripts' default extension
    data = build_dataset(path, seed=0, args={"resolution": "64", "caption_extension": ".txt"})
    assert data.datasets[0].entries[0].caption == "from txt"
    path.write_text('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "a"\n')
    assert len(build_dataset(path, seed=0, args={"resolution": 64}, root=tmp_path)) == 1


def test_validation_split_holds_images_out(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)] * 10)
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "validation_split": 0.3, "validation_seed": 4,
                                              "subsets": [{"image_dir": str(tmp_path / "a")}]}])
    one, two = build_dataset(cfg, seed=0), build_dataset(cfg, seed=1)
    assert len(one) == 7 and one.datasets[0].steps.held_out == 3
    assert {e.key for e in one.datasets[0].entries} == {e.key for e in two.datasets[0].entries}  # validation_seed


# --- latent cache ---------------------------------------------------------------------------------------------

class Encoder:
    """A fake VAE: 8× average pooling plus a constant channel; records each call's shape."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(images.shape))
        pooled = torch.nn.functional.avg_pool2d(images, 8)
        return torch.cat([pooled, torch.ones_like(pooled[:, :1])], dim=1)


def cache_config(tmp_path: Path, **subset: Any) -> Path:
    if not (tmp_path / "a").exists():
        half_image(tmp_path / "a" / "wide.png", (96, 48))
        half_image(tmp_path / "a" / "tall.png", (48, 96))
        half_image(tmp_path / "a" / "sq.png", (64, 64))
        half_image(tmp_path / "a" / "sq2.png", (64, 64))
    return write_config(tmp_path / "d.toml", [{**BUCKETS, "batch_size": 2, "subsets": [
        {"image_dir": str(tmp_path / "a"), "num_repeats": 2, **subset}]}])


def test_latents_cached_in_memory_with_flips(tmp_path: Path) -> None:
    data = build_dataset(cache_config(tmp_path, flip_aug=True), seed=0)
    enc = Encoder()
    stats = data.cache_latents(enc, to_disk=False, batch_size=3)
    assert (stats.encoded, stats.reused) == (4, 0)
    assert all(len({s[2:] for s in enc.calls[i:i + 2]}) == 1 for i in range(0, len(enc.calls), 2))
    per_bucket = Counter(e.bucket for e in data.datasets[0].entries)
    assert len(per_bucket) == 2 and max(s[0] for s in enc.calls) <= 3
    assert len(enc.calls) == 2 * sum(-(-n // 3) for n in per_bucket.values())  # each group + its flip
    assert not list(tmp_path.glob("a/*.npz"))
    for p in range(len(data)):
        batch = data[p]
        w, h = batch["bucket"]
        assert batch["images"] is None and batch["latents"].shape == (len(batch["keys"]), 4, h // 8, w // 8)
        for lat, flipped in zip(batch["latents"], batch["flipped"]):
            assert (lat[0, :, 0] > 0.9).all() != flipped  # the flipped latent encodes the flipped image


def test_latents_cached_on_disk_are_reused_and_refreshed(tmp_path: Path) -> None:
    cfg = cache_config(tmp_path, flip_aug=True)
    enc = Encoder()
    assert build_dataset(cfg, seed=0).cache_latents(enc, to_disk=True, batch_size=4).encoded == 4
    npz = tmp_path / "a" / "wide_0096x0048_sd.npz"
    with np.load(npz) as f:
        assert set(f.files) == {"latents", "original_size", "crop_ltrb", "latents_flipped"}
        assert f["original_size"].tolist() == [96, 48] and f["latents"].ndim == 3
    assert len(list(tmp_path.glob("a/*_sd.npz"))) == 4
    data = build_dataset(cfg, seed=0)
    enc2 = Encoder()
    assert (data.cache_latents(enc2, to_disk=True).reused, enc2.calls) == (4, [])
    batch = data[0]
    assert batch["latents"] is not None and batch["images"] is None
    # an edited image is encoded again; a resized one gets a new file
    old = (tmp_path / "a" / "sq.png").stat().st_mtime - 10
    os.utime(tmp_path / "a" / "sq_0064x0064_sd.npz", (old, old))  # the image is newer than its cache
    half_image(tmp_path / "a" / "sq2.png", (72, 72))
    stats = build_dataset(cfg, seed=0).cache_latents(Encoder(), to_disk=True)
    assert (stats.encoded, stats.reused) == (2, 2)
    assert (tmp_path / "a" / "sq2_0072x0072_sd.npz").exists()
    # without flip_aug the old files (with flips) are fine; turning flip_aug on needs latents_flipped
    np.savez(npz, latents=np.zeros((4, 6, 12), np.float32), original_size=np.array([96, 48]),
             crop_ltrb=np.array([0, 0, 0, 0]))
    assert build_dataset(cfg, seed=0).cache_latents(Encoder(), to_disk=True).encoded == 1


def test_a_truncated_latent_cache_file_is_encoded_again_and_reported(tmp_path: Path) -> None:
    cfg = cache_config(tmp_path, flip_aug=True)
    build_dataset(cfg, seed=0).cache_latents(Encoder(), to_disk=True)
    npz = tmp_path / "a" / "wide_0096x0048_sd.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])  # cut short, as a kill mid-write leaves it
    stats = build_dataset(cfg, seed=0).cache_latents(Encoder(), to_disk=True)
    assert (stats.encoded, stats.reused, stats.damaged) == (1, 3, [npz])
    with np.load(npz) as f:
        assert f["latents"].ndim == 3 and "latents_flipped" in f.files


def test_latent_cache_refuses_pixel_augmentation(tmp_path: Path) -> None:
    for option in ("color_aug", "random_crop"):
        data = build_dataset(cache_config(tmp_path, **{option: True}), seed=0)
        with pytest.raises(TrainError, match="when caching latents, color_aug and random_crop cannot be used"):
            data.cache_latents(Encoder(), to_disk=False)


# --- errors ---------------------------------------------------------------------------------------------------

def test_empty_dataset_names_the_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "a", [(64, 64)])
    for subsets in ([{"image_dir": str(tmp_path / "empty")}], [{"image_dir": str(tmp_path / "nowhere")}],
                    [{"image_dir": str(tmp_path / "a"), "num_repeats": 0}],
                    [{"image_dir": str(tmp_path / "a"), "is_reg": True}]):
        cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "subsets": subsets}])
        with pytest.raises(TrainError, match="no images to train on") as info:
            build_dataset(cfg, seed=0)
        assert str(cfg) in str(info.value) and "\n" not in str(info.value)


def test_unsupported_options_are_refused_or_reported(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(64, 64)])
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "subsets": [
        {"image_dir": str(tmp_path / "a"), "alpha_mask": True}]}])
    with pytest.raises(TrainError, match="alpha_mask"):
        build_dataset(cfg, seed=0)
    cfg = write_config(tmp_path / "d.toml", [{"resolution": 64, "subsets": [
        {"image_dir": str(tmp_path / "a"), "face_crop_aug_range": [1.0, 2.0]},
        {"image_dir": str(tmp_path / "missing")}]}])
    warnings = build_dataset(cfg, seed=0).warnings
    assert any("face_crop_aug_range" in w for w in warnings) and any("ignored" in w for w in warnings)


def test_one_image_in_two_resolutions_keeps_both_latents(tmp_path: Path) -> None:
    half_image(tmp_path / "a" / "x.png", (64, 64))
    cfg = write_config(tmp_path / "d.toml", [
        {"resolution": 64, "subsets": [{"image_dir": str(tmp_path / "a")}]},
        {"resolution": 128, "subsets": [{"image_dir": str(tmp_path / "a")}]}])
    data = build_dataset(cfg, seed=0)
    assert data.cache_latents(Encoder(), to_disk=True).encoded == 2
    shapes = sorted(tuple(data[p]["latents"].shape) for p in range(len(data)))
    assert shapes == [(1, 4, 8, 8), (1, 4, 16, 16)]  # the file holds one, the other stays in memory

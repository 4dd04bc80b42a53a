"""Bucket lists and assignments match sd-scripts' (reference §2.1–2.2)."""

from __future__ import annotations

from lora_tui.core.buckets import BucketPlan, bucket_resolutions, rounded_bucket_bounds


def test_512_square_has_the_17_buckets_sd_scripts_lists() -> None:
    assert bucket_resolutions((512, 512), 256, 1024, 64) == [
        (256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576),
        (512, 512), (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256),
        (1024, 256)]


def test_768_square_has_19_buckets() -> None:
    resos = bucket_resolutions((768, 768), 256, 1024, 64)
    assert len(resos) == 19
    assert (576, 960) in resos and (576, 1024) in resos and (768, 768) in resos


def test_1024_square_caps_the_long_side_at_max_bucket_reso() -> None:
    resos = bucket_resolutions((1024, 1024), 256, 1024, 64)
    assert len(resos) == 25
    assert all(max(r) == 1024 for r in resos)


def test_images_land_in_the_documented_buckets() -> None:
    plan = BucketPlan((512, 512))
    assert plan.select(512, 768).bucket == (384, 640)
    assert plan.select(512, 768).resized == (427, 640)
    assert plan.select(1920, 1080).bucket == (640, 384)
    assert plan.select(1920, 1080).resized == (683, 384)
    assert plan.select(600, 800).bucket == (448, 576)
    assert plan.select(1024, 1024).bucket == (512, 512)


def test_an_image_already_of_bucket_size_keeps_it() -> None:
    assert BucketPlan((512, 512)).select(320, 768).bucket == (320, 768)


def test_no_upscale_keeps_small_images_and_rounds_down() -> None:
    plan = BucketPlan((512, 512), bucket_no_upscale=True)
    assert plan.select(300, 300).bucket == (256, 256)
    assert plan.select(300, 300).resized == (300, 300)


def test_no_upscale_downscales_large_images_to_the_area() -> None:
    plan = BucketPlan((512, 512), bucket_no_upscale=True)
    bucket = plan.select(2000, 1000).bucket
    assert bucket[0] * bucket[1] <= 512 * 512
    assert bucket[0] % 64 == 0 and bucket[1] % 64 == 0


def test_without_bucketing_everything_goes_to_the_resolution() -> None:
    plan = BucketPlan((768, 512), enable_bucket=False)
    assert plan.select(100, 900).bucket == (768, 512)


def test_bucket_bounds_round_min_down_and_max_up() -> None:
    assert rounded_bucket_bounds(320, 960, 64) == (320, 960)
    assert rounded_bucket_bounds(300, 1000, 64) == (256, 1024)

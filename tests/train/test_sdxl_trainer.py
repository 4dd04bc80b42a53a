"""The built-in trainer on SDXL models: sdxl_train_network.py's semantics on the tiny SDXL model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.train.trainer_helpers import events, run_training, status, tiny_project, train_argv

pytestmark = pytest.mark.usefixtures("no_network", "one_torch_thread")



def _captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The run's Setup, kept when prepare() returns."""
    from lora_tui.train.loop import train as train_mod

    seen: dict[str, Any] = {}
    real = train_mod.prepare

    def keep(*args: Any, **kwargs: Any) -> Any:
        seen["setup"] = real(*args, **kwargs)
        return seen["setup"]

    monkeypatch.setattr(train_mod, "prepare", keep)
    return seen


def _losses(run: Path) -> list[float]:
    return [e["loss"] for e in events(run) if e["kind"] == "step"]


@pytest.mark.parametrize("form", ["folder", "single"])
def test_sdxl_trains_to_a_lora_from_a_folder_and_a_single_file(form: str, tmp_path: Path, tiny_sdxl_dir: Path,
                                                                 tiny_sdxl_file: Path) -> None:
    model = tiny_sdxl_dir if form == "folder" else tiny_sdxl_file
    root = tiny_project(tmp_path / "p", model, training={"max_train_steps": 3})
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 0
    kinds = [e["kind"] for e in events(run)]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 3
    assert all(math.isfinite(x) for x in _losses(run)) and status(run)["state"] == "finished"
    weights = load_file(str(root / "output" / "tiny.safetensors"))
    assert any(float(t.abs().sum()) > 0 for k, t in weights.items() if k.endswith("lora_up.weight"))


def test_both_text_encoders_train_with_gradient_checkpointing(tmp_path: Path, tiny_sdxl_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _captured(monkeypatch)
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 2,
                                                                 "gradient_checkpointing": True})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    setup = seen["setup"]
    te1, te2 = setup.model.text_encoders
    assert te1.is_gradient_checkpointing and te2.is_gradient_checkpointing
    assert setup.model.unet.is_gradient_checkpointing
    by_encoder = {0: 0, 1: 0}
    for lora in setup.network.text_encoder_loras:
        module = lora.org_module
        by_encoder[0 if any(module is m for m in te1.modules()) else 1] += 1
    assert by_encoder[0] > 0 and by_encoder[1] > 0  # TE1 and TE2 both carry LoRA modules
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in setup.trainable)


def test_unet_only_trains_no_text_encoder_module(tmp_path: Path, tiny_sdxl_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _captured(monkeypatch)
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 2,
                                                                 "network_train_unet_only": True})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    assert not seen["setup"].network.text_encoder_loras and seen["setup"].network.unet_loras


def test_two_text_encoder_lrs_train_both_encoders_at_the_first_as_sd_scripts_lora_does(
        tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 1,
                                                                 "text_encoder_lr": [2e-4, 1e-4]})
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 0
    step = next(e for e in events(run) if e["kind"] == "step")
    assert step["lr"]["textencoder"] == pytest.approx(2e-4)
    warns = [e["message"] for e in events(run) if e["kind"] == "warn"]
    assert any("text_encoder_lr has 2 values" in w and "first (0.0002)" in w for w in warns)


def test_no_half_vae_keeps_the_vae_in_float32_under_bf16(tmp_path: Path, tiny_sdxl_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _captured(monkeypatch)
    for half in (False, True):
        root = tiny_project(tmp_path / f"p{half}", tiny_sdxl_dir,
                            training={"max_train_steps": 1, "mixed_precision": "bf16", "no_half_vae": half})
        assert run_training(train_argv(root), tmp_path / f"run{half}") == 0
        vae_dtype = seen["setup"].vae_dtype
        assert vae_dtype == (torch.float32 if half else torch.bfloat16)


def test_size_and_crop_conditioning_reaches_the_unet_per_image(tmp_path: Path, tiny_sdxl_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The six numbers per image are the batch's original size, crop top-left and target size."""
    from lora_tui.train.loop import sdxl as sdxl_mod

    seen: list[tuple[torch.Tensor, dict[str, Any]]] = []
    real = sdxl_mod.SdxlConditioning.predict

    def spy(self, unet, noisy, timesteps, batch, device, dtype):  # type: ignore[no-untyped-def]
        seen.append((sdxl_mod.time_ids(batch["original_sizes_hw"], batch["crop_top_lefts"],
                                       batch["target_sizes_hw"]), batch))
        forward = unet.forward

        def record(*args: Any, **kwargs: Any) -> Any:
            seen[-1][1]["passed"] = kwargs["added_cond_kwargs"]["time_ids"].clone()
            return forward(*args, **kwargs)

        unet.forward = record
        try:
            return real(self, unet, noisy, timesteps, batch, device, dtype)
        finally:
            del unet.forward

    monkeypatch.setattr(sdxl_mod.SdxlConditioning, "predict", spy)
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 6})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    for ids, batch in seen:
        assert torch.equal(batch["passed"], ids)
        w, h = batch["bucket"]
        assert all(row[4:].tolist() == [h, w] for row in ids)  # target size = the bucket, (h, w)
    rows = {tuple(row.tolist()) for ids, _ in seen for row in ids}
    # a 64×96 (w×h) image in the 64×64 bucket: original (96, 64); crop top-left (0, 10), sd-scripts'
    # get_crop_ltrb (where the whole image would sit letterboxed: left = (64 - 64·64/96) // 2)
    assert rows == {(64.0, 64.0, 0.0, 0.0, 64.0, 64.0), (96.0, 64.0, 0.0, 10.0, 64.0, 64.0)}


def test_a_flipped_image_mirrors_its_crop_left_as_sd_scripts_does(tmp_path: Path) -> None:
    """sd-scripts: flipped → crop left = target width − crop right; random_crop keeps the letterbox offsets."""
    from lora_tui.train.data.dataset import build_dataset
    from tests.helpers import write_images, write_project

    write_images(tmp_path / "data", [(64, 96)] * 4, captions=dict.fromkeys(range(4), "x"))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": True, "min_bucket_reso": 64,
                              "max_bucket_reso": 64, "bucket_reso_steps": 64,
                              "subsets": [{"image_dir": "data", "flip_aug": True, "random_crop": True}]}])
    from lora_tui.core import configs, project

    generated = configs.write(project.load(tmp_path))
    data = build_dataset(generated.dataset_config, seed=3, root=tmp_path)
    seen = set()
    for epoch in range(1, 4):
        for position in range(len(data)):
            batch = data[(epoch, position, 0)]
            seen.add((batch["flipped"][0], batch["crop_top_lefts"][0], batch["original_sizes_hw"][0]))
    assert seen == {(False, (0, 10), (96, 64)), (True, (0, 12), (96, 64))}


def _size_conditioning(tmp_path: Path, *, enable_bucket: bool, cached: bool) -> set:
    """(flipped, crop top-left, original size hw) of every batch over a few epochs: 64×96 images at 64."""
    import torch

    from lora_tui.core import configs, project
    from lora_tui.train.data.dataset import build_dataset
    from tests.helpers import write_images, write_project

    write_images(tmp_path / "data", [(64, 96)] * 4, captions=dict.fromkeys(range(4), "x"))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": enable_bucket,
                              "min_bucket_reso": 64, "max_bucket_reso": 64, "bucket_reso_steps": 64,
                              "subsets": [{"image_dir": "data", "flip_aug": True, "random_crop": True}]}])
    generated = configs.write(project.load(tmp_path))
    data = build_dataset(generated.dataset_config, seed=3, root=tmp_path)
    if cached:  # latents in memory, as cache_latents leaves them (their values do not matter here)
        for entry in data.datasets[0].entries:
            entry.latents, entry.latents_flipped = torch.zeros(4, 8, 8), torch.ones(4, 8, 8)
    seen = set()
    for epoch in range(1, 4):
        for position in range(len(data)):
            batch = data[(epoch, position, 0)]
            seen.add((batch["flipped"][0], batch["crop_top_lefts"][0], batch["original_sizes_hw"][0]))
    return seen


def test_without_buckets_an_uncached_image_is_conditioned_as_the_resolution_with_no_crop(tmp_path: Path) -> None:
    """sd-scripts (enable_bucket false, image loaded at the step): original size = the resolution, crop
    (0, 0, 0, 0); a flipped image's crop left is then target width − 0 = 64."""
    seen = _size_conditioning(tmp_path, enable_bucket=False, cached=False)
    assert seen == {(False, (0, 0), (64, 64)), (True, (0, 64), (64, 64))}


def test_without_buckets_cached_latents_keep_the_letterboxed_values(tmp_path: Path) -> None:
    """sd-scripts caches through trim_and_resize_if_required: the image's own size and get_crop_ltrb."""
    seen = _size_conditioning(tmp_path, enable_bucket=False, cached=True)
    assert seen == {(False, (0, 10), (96, 64)), (True, (0, 12), (96, 64))}


def test_save_then_resume_reproduces_the_uninterrupted_sdxl_run(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    training = {"max_train_steps": 6, "save_every_n_steps": 3, "save_state": True}
    whole = tiny_project(tmp_path / "whole", tiny_sdxl_dir, training=training)
    assert run_training(train_argv(whole), tmp_path / "run-whole") == 0
    part = tiny_project(tmp_path / "part", tiny_sdxl_dir, training=training)
    assert run_training(train_argv(part), tmp_path / "run-a") == 0
    state = tmp_path / "run-a" / "state" / "tiny-step00000003-state"
    assert run_training(train_argv(part, "--resume", str(state)), tmp_path / "run-b") == 0
    resumed = [e for e in events(tmp_path / "run-b") if e["kind"] == "step"]
    assert [e["step"] for e in resumed] == [4, 5, 6]
    assert [round(x, 4) for x in _losses(tmp_path / "run-b")] == [round(x, 4) for x in
                                                                  _losses(tmp_path / "run-whole")[3:]]


def test_nan_loss_stops_sdxl_within_one_step_keeping_the_last_good_save(tmp_path: Path, tiny_sdxl_dir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.train.loop import setup as setup_mod

    real = setup_mod.Setup.loss
    calls = {"n": 0}

    def poisoned(self, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = real(self, batch)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(setup_mod.Setup, "loss", poisoned)
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 10, "save_every_n_steps": 2})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    evs = events(tmp_path / "run")
    error = next(e for e in evs if e["kind"] == "error")
    assert error["code"] == "nan" and error["step"] == 4
    assert error["last_good_save"].endswith("tiny-step00000002.safetensors")
    assert status(tmp_path / "run")["state"] == "failed"
    assert not (root / "output" / "tiny.safetensors").exists()


def test_sdxl_samples_are_drawn_and_recorded_in_events(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of sks dog --w 64 --h 64 --s 2 --d 5 --n blurry\n# a comment\nsks cat --s 2 --d 7\n")
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir,
                        training={"max_train_steps": 2, "sample_every_n_steps": 2, "sample_prompts": str(prompts),
                                  "sample_sampler": "euler_a"})
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 0
    (sample,) = [e for e in events(run) if e["kind"] == "sample"]
    assert sample["step"] == 2 and sample["prompts"] == ["a photo of sks dog", "sks cat"]
    assert len(sample["paths"]) == 2 and all(Path(p).is_file() for p in sample["paths"])
    from PIL import Image

    with Image.open(sample["paths"][0]) as image:
        assert image.size == (64, 64)
        assert np.asarray(image).std() > 0


def test_sdxl_buckets_may_step_by_32_as_sdxl_train_network_allows(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    from tests.helpers import write_images, write_project
    from tests.train.trainer_helpers import FAST

    write_images(tmp_path / "data", [(64, 96), (96, 64)], captions={0: "sks", 1: "sks"})
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": True, "min_bucket_reso": 32,
                              "max_bucket_reso": 128, "bucket_reso_steps": 32, "subsets": [{"image_dir": "data"}]}],
                  training={**FAST, "max_train_steps": 2}, model={"pretrained_model_name_or_path": str(tiny_sdxl_dir)})
    run = tmp_path / "run"
    assert run_training(train_argv(tmp_path), run) == 0
    assert status(run)["state"] == "finished"


def test_an_sd1_lora_as_network_weights_for_sdxl_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path,
                                                                     tiny_sdxl_dir: Path) -> None:
    sd1 = tiny_project(tmp_path / "sd1", tiny_model_dir, training={"max_train_steps": 1})
    assert run_training(train_argv(sd1), tmp_path / "run-sd1") == 0
    lora = sd1 / "output" / "tiny.safetensors"
    xl = tiny_project(tmp_path / "xl", tiny_sdxl_dir, training={"max_train_steps": 1, "network_weights": str(lora)})
    run = tmp_path / "run-xl"
    assert run_training(train_argv(xl), run) == 1
    error = next(e for e in events(run) if e["kind"] == "error")
    assert str(lora) in error["message"] and "SDXL" in error["message"] and "\n" not in error["message"]
    assert status(run)["state"] == "failed"


def test_sigint_stops_an_sdxl_run_with_a_resumable_state(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    """The run contract as for SD1.x (tests/train/test_trainer_processes.py), then resumed to its end."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"max_train_steps": 100000})
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "lora_tui.train", *train_argv(root), "--run_dir", str(run)],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "events.jsonl").exists() and '"kind": "step"' in (run / "events.jsonl").read_text()):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, out.decode()
    final = status(run)
    last = final["last_step"]
    assert final["state"] == "stopped" and (root / "output" / f"tiny-step{last:08d}.safetensors").exists()
    state = run / "state" / f"tiny-step{last:08d}-state"
    assert json.loads((state / "train_state.json").read_text())["current_step"] == last
    more = train_argv(root, "--resume", str(state), "--max_train_steps", str(last + 2))
    assert run_training(more, tmp_path / "run-b") == 0
    assert [e["step"] for e in events(tmp_path / "run-b") if e["kind"] == "step"] == [last + 1, last + 2]

"""Sample prompts, samplers, the sampling gate and sample images, checked against sd-scripts' rules."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lora_tui.core.errors import TrainError
from lora_tui.train.loop.sampling import (
    SamplePrompt,
    generate_samples,
    load_prompts,
    make_sample_scheduler,
    sample_filename,
    should_sample,
)

NAME = re.compile(r"^lora_(e\d{6}|\d{6})_(\d{2})_(\d{14})(_\d+)?\.png$")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- prompt files -------------------------------------------------------------------------------


def test_txt_defaults_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "# a comment\n\n   \na photo of sks dog\n  # indented is a prompt in sd-scripts\n")
    prompts = load_prompts(path)
    assert prompts[0] == SamplePrompt(prompt="a photo of sks dog", index=0)
    assert prompts[0].width == prompts[0].height == 512 and prompts[0].steps == 30
    assert prompts[0].scale == 7.5 and prompts[0].seed is None and prompts[0].sampler is None
    assert prompts[1].prompt == "# indented is a prompt in sd-scripts" and prompts[1].index == 1


def test_txt_every_option(tmp_path: Path) -> None:
    line = "masterpiece, 1girl --n lowres, bad hands --W 768 --h 640 --d 1234 --s 20 --l 5.5 --ss Euler_A --g 3.5\n"
    (prompt,) = load_prompts(write(tmp_path, "p.txt", line))
    assert prompt == SamplePrompt(prompt="masterpiece, 1girl", negative_prompt="lowres, bad hands", width=768,
                                  height=640, seed=1234, steps=20, scale=5.5, sampler="euler_a", index=0)


def test_txt_sizes_round_down_and_steps_clamp(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "a --w 100 --h 517 --s 0\nb --w 30 --h 64 --s 5000\n")
    a, b = load_prompts(path)
    assert (a.width, a.height, a.steps) == (96, 512, 1)
    assert (b.width, b.height, b.steps) == (64, 64, 1000)  # sd-scripts' floor of 64


def test_txt_dashes_in_the_wrong_place(tmp_path: Path) -> None:
    # " --" always splits: the rest of the prompt is lost unless it is an option (as in sd-scripts)
    path = write(tmp_path, "p.txt", "a cat --no-style on a mat --w 64\nbig -- dog --w512\nfoo--w 64\n")
    a, b, c = load_prompts(path)
    assert (a.prompt, a.width) == ("a cat", 64)
    assert (b.prompt, b.width) == ("big", 512)  # "--w512" needs a space: ignored
    assert (c.prompt, c.width) == ("foo--w 64", 512)  # no space before "--": part of the prompt


def test_txt_bad_value_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "ok\n\nbad --l 1.2.3\n")
    with pytest.raises(TrainError) as info:
        load_prompts(path)
    assert info.value.line == 3 and f"{path}:3:" in str(info.value) and "1.2.3" in str(info.value)


def test_toml_defaults_merge_into_subsets(tmp_path: Path) -> None:
    text = """
[prompt]
width = 640
height = 520
sample_steps = 12
negative_prompt = "blurry"

[[prompt.subset]]
prompt = "first"
seed = 7

[[prompt.subset]]
prompt = "second"
width = 256
scale = 4
sample_sampler = "k_euler"
"""
    first, second = load_prompts(write(tmp_path, "p.toml", text))
    assert first == SamplePrompt(prompt="first", negative_prompt="blurry", width=640, height=520, seed=7, steps=12,
                                 index=0)
    assert (second.width, second.height, second.scale, second.sampler, second.index) == (256, 520, 4.0, "k_euler", 1)


def test_json_dicts_and_strings(tmp_path: Path) -> None:
    text = '[{"prompt": "a dog", "width": 1024, "height": 1024, "seed": 5}, "a cat --n ugly --s 8"]'
    a, b = load_prompts(write(tmp_path, "p.json", text))
    assert (a.prompt, a.width, a.height, a.seed, a.index) == ("a dog", 1024, 1024, 5, 0)
    assert (b.prompt, b.negative_prompt, b.steps, b.index) == ("a cat", "ugly", 8, 1)


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("p.json", '[{"prompt": "a"},\n  {"prompt": }]', ":2:"),
    ("p.json", '{"prompt": "a"}', "list"),
    ("p.json", '[{"prompt": "a", "width": "wide"}]', "prompt 1"),
    ("p.json", '[3]', "prompt 1"),
    ("p.toml", "[prompt]\nwidth = \n", ":2:"),
    ("p.toml", '[prompt]\nprompt = "a"\n', "prompt.subset"),
    ("p.yaml", "a cat", "unsupported"),
])
def test_bad_files_raise_train_error(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TrainError) as info:
        load_prompts(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="cannot read"):
        load_prompts(tmp_path / "nope.txt")


# --- samplers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls"), [
    ("ddim", "DDIMScheduler"), ("pndm", "PNDMScheduler"), ("lms", "LMSDiscreteScheduler"),
    ("k_lms", "LMSDiscreteScheduler"), ("euler", "EulerDiscreteScheduler"), ("k_euler", "EulerDiscreteScheduler"),
    ("euler_a", "EulerAncestralDiscreteScheduler"), ("k_euler_a", "EulerAncestralDiscreteScheduler"),
    ("heun", "HeunDiscreteScheduler"), ("dpm_2", "KDPM2DiscreteScheduler"), ("k_dpm_2", "KDPM2DiscreteScheduler"),
    ("dpm_2_a", "KDPM2AncestralDiscreteScheduler"), ("k_dpm_2_a", "KDPM2AncestralDiscreteScheduler"),
    ("dpmsolver", "DPMSolverMultistepScheduler"), ("dpmsolver++", "DPMSolverMultistepScheduler"),
    ("dpmsingle", "DPMSolverSinglestepScheduler"), ("no_such_sampler", "DDIMScheduler"),
])
def test_scheduler_mapping(name: str, cls: str) -> None:
    if cls == "LMSDiscreteScheduler" and importlib.util.find_spec("scipy") is None:
        with pytest.raises(TrainError, match="scipy"):
            make_sample_scheduler(name, False)
        return
    for v_param, prediction in ((False, "epsilon"), (True, "v_prediction")):
        sched = make_sample_scheduler(name, v_param)
        assert type(sched).__name__ == cls
        cfg = sched.config
        assert cfg.prediction_type == prediction and cfg.num_train_timesteps == 1000
        assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (0.00085, 0.012, "scaled_linear")
        assert getattr(cfg, "clip_sample", True) is True  # sd-scripts forces it on where it exists


def test_scheduler_details() -> None:
    assert make_sample_scheduler("dpmsolver++", False).config.algorithm_type == "dpmsolver++"
    assert make_sample_scheduler("dpmsolver", False).config.algorithm_type == "dpmsolver"
    assert make_sample_scheduler("heun", False, clip_sample=False).config.clip_sample is False
    assert type(make_sample_scheduler(None, False)).__name__ == "DDIMScheduler"


# --- when to sample -----------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "epoch", "n_steps", "n_epochs", "first", "end", "expected"), [
    (0, 0, None, None, True, False, True),     # sample_at_first
    (0, 0, 10, 1, False, False, False),
    (10, None, 10, None, False, False, True),
    (15, None, 10, None, False, False, False),
    (20, 2, 10, None, False, True, False),      # step rule never fires on the epoch-end call
    (20, None, 10, 2, False, False, False),     # epochs override steps
    (20, 2, 10, 2, False, True, True),
    (30, 3, None, 2, False, True, False),
    (30, 3, None, 2, False, False, False),      # epoch rule only at epoch end
    (30, 3, None, None, True, True, False),
    (30, None, 0, None, False, False, False),   # 0 = off
])
def test_should_sample(step: int, epoch: int | None, n_steps: int | None, n_epochs: int | None, first: bool,
                       end: bool, expected: bool) -> None:
    assert should_sample(step, epoch, every_n_steps=n_steps, every_n_epochs=n_epochs, at_first=first,
                         is_epoch_end=end) is expected


def test_sample_filename() -> None:
    when = 1_700_000_000.0
    prompt = SamplePrompt(prompt="x", seed=42, index=3)
    stamp = __import__("time").strftime("%Y%m%d%H%M%S", __import__("time").localtime(when))
    assert sample_filename("judy", prompt, step=120, epoch=None, when=when) == f"judy_000120_03_{stamp}_42.png"
    assert sample_filename("judy", SamplePrompt(prompt="x", index=12), step=120, epoch=2, when=when) == \
        f"judy_e000002_12_{stamp}.png"
    assert sample_filename(None, prompt, step=0, epoch=0, when=when) == f"e000000_03_{stamp}_42.png"


# --- images -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> Any:
    """The tiny model, drawn on one thread: on a shared 2-core box, 2 threads ran ~100x slower."""
    from lora_tui.train.model.load import load_base_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_base_model(tiny_model_dir)
    finally:
        torch.set_num_threads(threads)


def draw(base: Any, prompts: list[SamplePrompt], out: Path, **kw: Any) -> list[tuple[Path, SamplePrompt]]:
    args: dict[str, Any] = {"output_name": "lora", "step": 7, "epoch": None, "device": "cpu", "dtype": torch.float32,
                            "sampler": "euler_a", "v_parameterization": False}
    args.update(kw)
    return generate_samples(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae, unet=base.unet,
                            prompts=prompts, out_dir=out, **args)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def small(seed: int | None, index: int = 0, **kw: Any) -> SamplePrompt:
    return SamplePrompt(prompt="a photo of sks dog", width=64, height=64, steps=2, seed=seed, index=index, **kw)


def test_generate_names_sizes_and_restores_state(base: Any, tmp_path: Path) -> None:
    base.unet.train()
    base.text_encoder.eval()
    rng = torch.get_rng_state()
    prompts = [small(42), SamplePrompt(prompt="cat", negative_prompt="dog", width=128, height=64, steps=2, index=1,
                                       sampler="ddim", scale=1.0)]
    results = draw(base, prompts, tmp_path / "samples")
    assert [p.index for _, p in results] == [0, 1]
    (p0, s0), (p1, s1) = results
    m0, m1 = NAME.match(p0.name), NAME.match(p1.name)
    assert m0 and m1 and p0.parent == tmp_path / "samples"
    assert m0.group(1, 2, 4) == ("000007", "00", "_42") and s0.seed == 42
    assert m1.group(1, 2, 4) == ("000007", "01", None) and isinstance(s1.seed, int)  # random seed, recorded
    assert Image.open(p0).size == (64, 64) and Image.open(p1).size == (128, 64)
    assert base.unet.training and all(m.training for m in base.unet.modules())
    assert not base.text_encoder.training and not base.vae.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert next(base.unet.parameters()).dtype == torch.float32
    base.unet.eval()


def test_generate_is_deterministic_and_epoch_named(base: Any, tmp_path: Path) -> None:
    (a, _), = draw(base, [small(5)], tmp_path / "a")
    (b, _), = draw(base, [small(5)], tmp_path / "b", step=9, epoch=3)
    (c, _), = draw(base, [small(6)], tmp_path / "c")
    assert NAME.match(b.name).group(1) == "e000003"
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_generate_honours_lora_and_clip_skip(base: Any, tmp_path: Path) -> None:
    from lora_tui.train.network.lora import LoRANetwork

    (plain, _), = draw(base, [small(11)], tmp_path / "plain")
    (skipped, _), = draw(base, [small(11)], tmp_path / "skip", clip_skip=2)
    (skip1, _), = draw(base, [small(11)], tmp_path / "skip1", clip_skip=1)
    assert not np.array_equal(pixels(plain), pixels(skipped))
    assert np.array_equal(pixels(plain), pixels(skip1))  # sd-scripts' 1 = the last layer = no skip
    network = LoRANetwork(base.text_encoder, base.unet, dim=4, alpha=4)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for lora in network.loras:
            lora.lora_up.weight.copy_(torch.randn(lora.lora_up.weight.shape, generator=gen) * 0.5)
    network.apply_to()
    try:
        network.train()
        (patched, _), = draw(base, [small(11)], tmp_path / "lora", network=network)
        assert network.training  # put back in train mode after sampling
    finally:
        network.remove()
    assert not np.array_equal(pixels(plain), pixels(patched))
    (again, _), = draw(base, [small(11)], tmp_path / "again")
    assert np.array_equal(pixels(plain), pixels(again))


def test_every_sampler_draws(base: Any, tmp_path: Path) -> None:
    names = ["ddim", "pndm", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++", "dpmsingle"]
    if importlib.util.find_spec("scipy") is not None:
        names.append("lms")
    # PNDM's Runge-Kutta warm-up needs at least 4 steps (in sd-scripts too)
    prompts = [replace(small(1, index=i, sampler=name), steps=4 if name == "pndm" else 2)
               for i, name in enumerate(names)]
    results = draw(base, prompts, tmp_path, v_parameterization=True)
    assert [p.sampler for _, p in results] == names
    for path, _ in results:
        assert pixels(path).std() > 0  # no NaN-black images


def test_generate_under_bf16_autocast_keeps_float32_weights(base: Any, tmp_path: Path) -> None:
    (path, _), = draw(base, [small(3)], tmp_path, dtype=torch.bfloat16)
    assert Image.open(path).size == (64, 64) and pixels(path).std() > 0
    for module in (base.unet, base.vae, base.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.float32}

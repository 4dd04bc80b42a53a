"""The sentence captioners' image half without the processor: the model gets exactly what the
processor would have given it, or the processor does the work."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lora_tui.caption import pixels
from lora_tui.caption.detect import resolve


def picture(path: Path, size: tuple[int, int], seed: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=92)
    return str(path)


@pytest.mark.parametrize("family", ["blip", "git", "llava"])
@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_the_model_gets_the_processors_inputs_for_images_of_any_shape(
        tmp_path: Path, vlm_models: dict[str, Path], family: str, prompt: str | None) -> None:
    from lora_tui.caption.vlm import GenSettings, SentenceCaptioner

    model = SentenceCaptioner(resolve(str(vlm_models[family])), GenSettings(max_new_tokens=2, prompt=prompt),
                              device="cpu")
    assert model.fast is not None  # these processors follow the plain recipe
    images = [picture(tmp_path / f"{i}.{ext}", size, i) for i, (size, ext) in
              enumerate([((37, 91), "png"), ((300, 201), "jpg"), ((1200, 650), "jpg"), ((17, 16), "png")])]
    fast = [model.prepare(p) for p in images]
    model.fast = None
    slow = [model.prepare(p) for p in images]
    for mine, theirs in zip(fast, slow):
        assert mine.keys() == theirs.keys()
        for key in theirs:
            assert mine[key].shape == theirs[key].shape and mine[key].dtype == theirs[key].dtype
            assert torch.allclose(mine[key].float(), theirs[key].float(), atol=1e-5), key


def test_a_processor_that_pads_or_uses_torchvision_interpolation_keeps_doing_every_image() -> None:
    plain = {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    assert pixels.recipe_for(SimpleNamespace(**plain)) is not None
    assert pixels.recipe_for(SimpleNamespace(**plain, do_pad=True)) is None
    assert pixels.recipe_for(SimpleNamespace(**{**plain, "resample": "InterpolationMode.BICUBIC"})) is None
    assert pixels.recipe_for(SimpleNamespace(**{**plain, "size": {"longest_edge": 32}})) is None


def test_a_processor_whose_output_the_recipe_does_not_reproduce_is_not_replaced() -> None:
    settings = SimpleNamespace(do_resize=True, size={"height": 8, "width": 8}, resample=3, do_rescale=True,
                               rescale_factor=1 / 255, do_normalize=False)
    recipe = pixels.recipe_for(settings)
    assert recipe is not None
    processor = SimpleNamespace(image_processor=settings)

    def bilinear(image: Image.Image) -> dict:  # says bicubic, does bilinear (a different backend)
        x = np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255
        return {"pixel_values": torch.from_numpy(x.transpose(2, 0, 1).copy())[None]}

    def exact(image: Image.Image) -> dict:
        return {"pixel_values": torch.from_numpy(recipe(image))[None], "input_ids": torch.tensor([[1, 2]])}

    def tokens_follow_the_image(image: Image.Image) -> dict:
        return {**exact(image), "input_ids": torch.tensor([[1] * (image.width // 100 + 1)])}

    assert pixels.fast_path(processor, bilinear) is None
    assert pixels.fast_path(processor, tokens_follow_the_image) is None
    fast = pixels.fast_path(processor, exact)
    assert fast is not None and torch.equal(fast.shared["input_ids"], torch.tensor([[1, 2]]))


def test_a_processor_that_tiles_large_images_keeps_doing_every_image() -> None:
    """Gemma 3's pan-and-scan adds crops only for images past a size the probes stay under: its
    settings otherwise read as the plain recipe, and the probes alone would have let it through."""
    import transformers

    cls = getattr(transformers, "Gemma3ImageProcessorPil", None) or getattr(transformers, "Gemma3ImageProcessor", None)
    if cls is None:
        pytest.skip("this transformers has no Gemma 3")
    image_processor = cls(size={"height": 64, "width": 64}, do_pan_and_scan=True, pan_and_scan_min_crop_size=512,
                          pan_and_scan_max_num_crops=4, pan_and_scan_min_ratio_to_activate=1.2)

    def run(image: Image.Image) -> dict:
        return dict(image_processor(image, return_tensors="pt"))

    wide = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1000, 2400, 3), dtype=np.uint8))
    assert run(wide)["pixel_values"].shape[0] == 3  # the image and two crops: not one image's recipe
    assert pixels.fast_path(SimpleNamespace(image_processor=image_processor), run) is None


@pytest.mark.parametrize("flag", ["do_pan_and_scan", "do_image_splitting", "do_thumbnail", "do_align_long_axis",
                                  "crop_to_patches", "split_image"])
def test_a_processor_with_a_step_the_recipe_does_not_know_keeps_doing_every_image(flag: str) -> None:
    plain = {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": False, "do_convert_rgb": True, "do_center_crop": None}
    assert pixels.recipe_for(SimpleNamespace(**plain, **{flag: False})) is not None
    assert pixels.recipe_for(SimpleNamespace(**plain, **{flag: True})) is None

"""What the pipeline does to stay light next to the model, kept from changing what the model sees."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lora_tui.caption import loader, run
from lora_tui.caption.detect import resolve
from lora_tui.core import project
from lora_tui.core.journal import Change
from tests.caption.helpers import colour_project


def gradient(size: tuple[int, int]) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8))


def reference_input(path: Path, side: int) -> np.ndarray:
    """The tagger's input as the plain recipe makes it: decode whole, RGB, fit, pad white, BGR floats."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
    scale = side / max(img.size)
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BICUBIC)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return np.asarray(square)[..., ::-1].astype(np.float32)[None]


def test_a_jpeg_under_twice_the_model_side_decodes_exactly_as_without_draft(tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    gradient((60, 40)).save(path, quality=90)
    assert np.array_equal(np.asarray(loader.open_rgb(str(path), draft=32)), np.asarray(loader.open_rgb(str(path))))


def test_a_large_jpeg_decodes_reduced_but_still_covers_the_model_side(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    gradient((400, 260)).save(path, quality=90)
    img = loader.open_rgb(str(path), draft=64)
    assert img.mode == "RGB" and min(img.size) >= 64 and img.size[0] < 400


def test_exif_rotation_and_transparency_are_still_applied(tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    gradient((40, 20)).save(rotated, quality=95, exif=exif)
    assert loader.open_rgb(str(rotated)).size == (20, 40)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(clear)
    assert loader.open_rgb(str(clear)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("name,size", [("wide.jpg", (30, 12)), ("tall.png", (9, 25)), ("exact.png", (16, 16))])
def test_the_tagger_sees_what_the_plain_recipe_makes_for_small_images(tmp_path: Path, tagger: Path,
                                                                     name: str, size: tuple[int, int]) -> None:
    from lora_tui.caption.tagger import Tagger, TagSettings

    path = tmp_path / name
    gradient(size).save(path, quality=90) if name.endswith(".jpg") else gradient(size).save(path)
    model = Tagger(resolve(str(tagger)), TagSettings(), "cpu")
    assert np.array_equal(model._batch([model.prepare(str(path))]), reference_input(path, model.size))


def test_the_tagger_runs_on_the_threads_it_is_given_without_spinning(tagger: Path) -> None:
    from lora_tui.caption.tagger import Tagger, TagSettings

    model = Tagger(resolve(str(tagger)), TagSettings(), "cpu", cpu_threads=1)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_model_gets_the_cores_the_loader_threads_leave() -> None:
    assert loader.model_threads(loader.cores()) == 1
    assert loader.model_threads(1) == max(1, loader.cores() - 1)


def test_captions_queued_together_become_journal_edits_of_up_to_a_group_and_one_undo_step(tmp_path: Path) -> None:
    count = run.GROUP_MAX + 4
    root = colour_project(tmp_path / "p", [f"red{i}" for i in range(count)])
    writer = run.Writer(project.load(root), "auto-caption")
    for i in range(count):
        image = root / "data" / "pics" / f"red{i}.png"
        writer.put(Change(image.with_suffix(".txt"), None, f"red theme {i}\n"), str(image))
    assert writer.close(lambda n: f"auto-caption {n} images") == 1
    assert len(writer.seqs) == 2 and writer.written == count


def test_the_consumer_prepares_the_first_batch_beside_the_worker_and_keeps_the_order() -> None:
    import time

    seen: dict[int, str] = {}

    def prepare(i: int) -> int:
        time.sleep(0.02)
        seen[i] = threading.current_thread().name
        return i * 10

    got = list(loader.batches(list(range(12)), prepare, 4, workers=1))
    assert [[item.data for item in batch] for batch in got] == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100, 110]]
    assert threading.current_thread().name in {seen[i] for i in range(4)}  # it did not just wait
    assert any(name.startswith("caption-load") for name in seen.values())


def test_an_image_the_consumer_prepared_that_fails_is_reported_and_the_rest_go_on() -> None:
    def prepare(i: int) -> int:
        if i == 3:  # the last of the first batch: the one the consumer takes first
            raise OSError(5, "Input/output error")
        return i

    batch = next(loader.batches(list(range(4)), prepare, 4, workers=1, describe=lambda i: f"img{i}.png"))
    assert [item.data for item in batch[:3]] == [0, 1, 2]
    assert batch[3].error == "img3.png: cannot read image: Input/output error"


def test_tags_are_picked_from_a_full_size_wd14_list_as_the_rules_say() -> None:
    """10,861 tags (WD14 v3), picked in one array operation: the same tags, in the same order, as
    checking each tag by hand."""
    from lora_tui.caption.tagger import CHARACTER, RATING, TagSelector, TagSettings, TagTable

    rng = np.random.default_rng(1)
    n = 10_861
    cats = [RATING if i < 4 else CHARACTER if i % 40 == 0 else 0 for i in range(n)]
    table = TagTable(tuple(f"tag_{i}" for i in range(n)), tuple(cats))
    probs = np.round(rng.random(n) * 0.4, 2).astype(np.float32)  # many ties, ~12 % over 0.35
    settings = TagSettings(exclude=frozenset({"tag 100", "TAG_200"}), ratings=True, character_threshold=0.38)
    by_hand = sorted(((-float(p), i) for i, (p, c) in enumerate(zip(probs, cats))
                      if c != RATING and i not in (100, 200)
                      and float(p) >= (0.38 if c == CHARACTER else 0.35)))
    rating = max(range(4), key=lambda i: (float(probs[i]), -i))
    assert TagSelector(table, settings).select(probs) == [f"tag {i}" for i in [rating] + [i for _, i in by_hand]]


def test_a_tagger_giving_more_scores_than_its_tag_list_is_a_one_line_error() -> None:
    from lora_tui.caption.tagger import TagSelector, TagSettings, TagTable
    from lora_tui.core.errors import ModelError

    with pytest.raises(ModelError, match="the model gave 3 scores but the tag list has 2 rows"):
        TagSelector(TagTable(("a", "b"), (0, 0)), TagSettings()).select([0.9, 0.9, 0.9])


def test_a_lone_caption_lands_without_waiting_for_the_run_to_end(tmp_path: Path) -> None:
    root = colour_project(tmp_path / "p", ["blue1"])
    landed = threading.Event()
    writer = run.Writer(project.load(root), "auto-caption", on_written=lambda images, files: landed.set())
    image = root / "data" / "pics" / "blue1.png"
    writer.put(Change(image.with_suffix(".txt"), None, "blue theme\n"), str(image))
    assert landed.wait(run.GROUP_WAIT_S + 10)  # the writer's wait, plus a slow shared machine's disk
    writer.close(lambda n: "auto-caption")
    assert image.with_suffix(".txt").read_text() == "blue theme\n"


def test_a_sentence_captioner_decodes_jpegs_for_its_processor_side(vlm_models: dict[str, Path]) -> None:
    """transformers 5 keeps the processor's size in a SizeDict (no keys()): it must still be read."""
    from lora_tui.caption.vlm import GenSettings, SentenceCaptioner
    from tests.caption.tiny_vlm import IMAGE

    model = SentenceCaptioner(resolve(str(vlm_models["blip"])), GenSettings(max_new_tokens=2), device="cpu")
    assert model.size == IMAGE


def test_a_sentence_captioner_generates_on_its_threads_until_closed_then_gives_the_process_its_own_back(
        tmp_path: Path, vlm_models: dict[str, Path]) -> None:
    import torch

    from lora_tui.caption.vlm import GenSettings, SentenceCaptioner

    path = tmp_path / "a.png"
    gradient((20, 20)).save(path)
    model = SentenceCaptioner(resolve(str(vlm_models["blip"])), GenSettings(max_new_tokens=2), device="cpu",
                              cpu_threads=1)
    seen = []
    generate = model.model.generate
    model.model.generate = lambda **kw: seen.append(torch.get_num_threads()) or generate(**kw)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.run([model.prepare(str(path))])
        model.run([model.prepare(str(path))])
        assert seen == [1, 1] and torch.get_num_threads() == 1  # kept between batches
        model.close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_16_bit_grayscale_png_is_captioned_as_it_looks_not_clipped_to_white(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = tmp_path / "depth.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img = loader.open_rgb(str(path))
    assert img.mode == "RGB"
    row = np.asarray(img)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and 120 <= row[32] <= 135  # a ramp, not white

"""Sentence captioners (BLIP, GIT, a LLaVA-style chat model) end to end through ``lora-tui caption``.

The tiny models are random, so each test compares the written caption with what the same model
says for that image when driven directly through transformers, one image at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tui.caption.vlm import clean
from lora_tui.cli import main
from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks
from tests.caption.helpers import colour_project

TOKENS = "5"


def reference(folder: Path, image: Path, text: str | None = None, *, answer_only: bool = False) -> str:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    kwargs = {"images": [Image.open(image).convert("RGB")], "return_tensors": "pt"}
    if text is not None:
        kwargs["text"] = [text]
    inputs = processor(**kwargs)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=int(TOKENS), do_sample=False, num_beams=1)
    if answer_only:
        out = out[:, inputs["input_ids"].shape[1]:]
    return clean(processor.batch_decode(out, skip_special_tokens=True)[0])


def written(root: Path, name: str) -> str:
    return (root / "data" / "pics" / f"{name}.txt").read_text()


def test_blip_captions_every_uncaptioned_image_in_batches(tmp_path: Path, vlm_models: dict[str, Path]) -> None:
    root = colour_project(tmp_path / "p", ["red1", "green1", "blue1"], trigger="sks")
    assert main(["caption", str(root), "--model", str(vlm_models["blip"]), "--batch-size", "2",
                 "--max-new-tokens", TOKENS]) == 0
    for name in ("red1", "green1", "blue1"):
        expected = reference(vlm_models["blip"], root / "data" / "pics" / f"{name}.png")
        assert written(root, name) == "sks, " + expected + "\n" if expected else "sks\n"
    assert len(ReviewMarks(root).with_mark(NEEDS_REVIEW)) == 3


def test_git_with_a_prompt_continues_it(tmp_path: Path, vlm_models: dict[str, Path]) -> None:
    root = colour_project(tmp_path / "p", ["blue1"])
    assert main(["caption", str(root), "--model", str(vlm_models["git"]), "--prompt", "a red",
                 "--max-new-tokens", TOKENS]) == 0
    text = written(root, "blue1")
    assert text.startswith("a red") and text == reference(vlm_models["git"], root / "data" / "pics" / "blue1.png",
                                                          "a red") + "\n"


def test_a_chat_model_answers_the_prompt_without_echoing_it(tmp_path: Path, vlm_models: dict[str, Path],
                                                            capsys: pytest.CaptureFixture) -> None:
    from transformers import AutoProcessor

    root = colour_project(tmp_path / "p", ["red1", "green1"])
    code = main(["caption", str(root), "--model", str(vlm_models["llava"]), "--prompt", "Tags?",
                 "--max-new-tokens", TOKENS, "--json"])
    processor = AutoProcessor.from_pretrained(vlm_models["llava"], local_files_only=True)
    chat = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                       {"type": "text", "text": "Tags?"}]}],
                                         add_generation_prompt=True, tokenize=False)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    skipped = {Path(e["image"]).name for e in events if e["event"] == "skip"}
    for name in ("red1", "green1"):
        expected = reference(vlm_models["llava"], root / "data" / "pics" / f"{name}.png", chat, answer_only=True)
        if expected:  # a random model may say nothing at all: then the image is reported, not captioned
            assert written(root, name) == expected + "\n" and "Tags?" not in written(root, name)
        else:
            assert f"{name}.png" in skipped and not (root / "data" / "pics" / f"{name}.txt").exists()
    assert events[-1]["event"] == "end" and events[-1]["written"] == 2 - len(skipped) >= 1
    assert code == (3 if skipped else 0)


def test_an_unsupported_family_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert main(["caption", str(root), "--model", str(model)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lora-tui: error")]
    assert len(err) == 1 and "unsupported captioner: config.json says model_type 'bert' (BertModel)" in err[0]


def test_cuda_asked_for_on_a_machine_without_it_is_one_line(tmp_path: Path, vlm_models: dict[str, Path],
                                                            capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root = colour_project(tmp_path / "p", ["red1"])
    assert main(["caption", str(root), "--model", str(vlm_models["git"]), "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA device here" in capsys.readouterr().err


def test_clean_keeps_one_readable_line() -> None:
    assert clean(" a\x18 dog\n on\ufffd grass \t") == "a dog on grass"

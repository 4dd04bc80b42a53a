"""SDXL text-encoder output caching in the built-in trainer: in memory, on disk in sd-scripts' files,
and refused with the options it conflicts with in the words `lora-tui check` uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lora_tui.core.family_checks import family_problems
from tests.train.trainer_helpers import events, run_training, tiny_project, train_argv

pytestmark = pytest.mark.usefixtures("no_network", "one_torch_thread")
UNET_ONLY = {"max_train_steps": 4, "network_train_unet_only": True}



def _losses(run: Path) -> list[float]:
    return [round(e["loss"], 4) for e in events(run) if e["kind"] == "step"]


def test_cached_outputs_train_exactly_as_encoding_every_step(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    plain = tiny_project(tmp_path / "plain", tiny_sdxl_dir, kind="class", training=UNET_ONLY)
    assert run_training(train_argv(plain), tmp_path / "run-plain") == 0
    cached = tiny_project(tmp_path / "cached", tiny_sdxl_dir, kind="class",
                          training={**UNET_ONLY, "cache_text_encoder_outputs": True})
    assert run_training(train_argv(cached), tmp_path / "run-cached") == 0
    assert _losses(tmp_path / "run-cached") == _losses(tmp_path / "run-plain")
    assert not list((cached / "data").rglob("*_te_outputs.npz"))  # in memory only


def test_disk_cache_writes_sd_scripts_files_and_reuses_them(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, kind="class",
                       training={**UNET_ONLY, "cache_text_encoder_outputs_to_disk": True})
    assert run_training(train_argv(root), tmp_path / "run-a") == 0
    images = sorted(p for p in (root / "data" / "b").iterdir() if p.suffix == ".png")
    files = sorted((root / "data" / "b").glob("*_te_outputs.npz"))
    assert [f.name for f in files] == [f"{p.stem}_te_outputs.npz" for p in images]
    with np.load(files[0]) as npz:  # sd-scripts' keys and shapes (no batch axis), float32
        assert npz["hidden_state1"].shape == (77, 16) and npz["hidden_state2"].shape == (77, 32)
        assert npz["pool2"].shape == (32,) and npz["pool2"].dtype == np.float32
    stamps = [f.stat().st_mtime_ns for f in files]
    assert run_training(train_argv(root), tmp_path / "run-b") == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not written again
    assert _losses(tmp_path / "run-b") == _losses(tmp_path / "run-a")


def test_a_cache_file_from_another_caption_is_encoded_again(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    from lora_tui.train.data import te_cache

    path = tmp_path / "img_te_outputs.npz"
    outputs = (torch.ones(77, 16), torch.ones(77, 32), torch.ones(32))
    te_cache.write(path, outputs, "sks dog")
    assert te_cache.read(path, "sks dog") is not None and te_cache.read(path, "sks cat") is None
    np.savez(path, hidden_state1=np.ones((77, 16)), hidden_state2=np.ones((77, 32)), pool2=np.ones(32))
    assert te_cache.read(path, "anything") is not None  # sd-scripts' own file (no caption): trusted as there


def _error(run: Path) -> dict:
    return next(e for e in events(run) if e["kind"] == "error")


def test_te_cache_with_shuffle_caption_is_refused_as_check_refuses_it(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, kind="caption",
                        training={**UNET_ONLY, "cache_text_encoder_outputs": True})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    message = _error(tmp_path / "run")["message"]
    (lint,) = [p for p in family_problems("sdxl", {"cache_text_encoder_outputs": True,
                                                   "network_train_unet_only": True}, backend="builtin",
                                          subsets=[{"label": "data/a", "shuffle_caption": True}])
               if p.code == "te-cache-captions"]
    assert "shuffle_caption cannot be used while caching text-encoder outputs" in message
    assert message.split(": ", 1)[1] == f"{lint.message.split(': ', 1)[1]} ({lint.fix})" and "\n" not in message


@pytest.mark.parametrize("option", ["caption_dropout_rate", "caption_tag_dropout_rate", "token_warmup_step"])
def test_te_cache_refuses_every_caption_changing_option(option: str, tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    from tests.helpers import write_images, write_project
    from tests.train.trainer_helpers import FAST

    write_images(tmp_path / "data", [(64, 64)] * 2, captions={0: "sks", 1: "sks"})
    subset = {"image_dir": "data", option: 0.5 if "rate" in option else 2}
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "subsets": [subset]}],
                  training={**FAST, **UNET_ONLY, "cache_text_encoder_outputs": True},
                  model={"pretrained_model_name_or_path": str(tiny_sdxl_dir)})
    assert run_training(train_argv(tmp_path), tmp_path / "run") == 1
    assert f"{option} cannot be used while caching text-encoder outputs" in _error(tmp_path / "run")["message"]


def test_te_cache_while_training_the_text_encoders_is_refused(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, kind="class",
                        training={"max_train_steps": 2, "cache_text_encoder_outputs_to_disk": True})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    error = _error(tmp_path / "run")
    assert error["message"].startswith("cache_text_encoder_outputs needs network_train_unet_only = true")
    assert not list((root / "data").rglob("*_te_outputs.npz"))


def test_sdxl_only_options_on_an_sd1_model_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, kind="class",
                        training={**UNET_ONLY, "cache_text_encoder_outputs": True})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    assert "cache_text_encoder_outputs is an SDXL option" in _error(tmp_path / "run")["message"]

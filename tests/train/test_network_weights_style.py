"""`network_weights` in another key style on SDXL: diffusers/peft files are one line naming the
conversion; kohya names in diffusers' U-Net layout are renamed to the original layout, as sd-scripts'
create_network_from_weights does (convert_diffusers_to_sai_if_needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_tui.core.errors import TrainError
from lora_tui.train.lora_tools.convert import convert, kohya_to_path
from lora_tui.train.network.file import load_lora, save_lora
from lora_tui.train.network.lora import LoRANetwork
from tests.train.trainer_helpers import events, run_training, status, tiny_project, train_argv


@pytest.fixture(scope="module")
def xl(tiny_sdxl_dir: Path):
    from lora_tui.train.model.sdxl_load import load_sdxl_model

    return load_sdxl_model(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def kohya_file(xl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SDXL LoRA on the tiny model with random (non-zero) weights, in sd-scripts' layout."""
    net = LoRANetwork(tuple(xl.text_encoders), xl.unet, dim=4, alpha=2.0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    path = tmp_path_factory.mktemp("xl-lora") / "xl.safetensors"
    net.save_weights(path, {"ss_base_model_version": "sdxl_base_v1-0"})
    return path


def test_a_diffusers_style_lora_as_network_weights_names_the_file_and_the_convert_command(
        xl, kohya_file: Path, tmp_path: Path) -> None:
    diffusers_file = tmp_path / "xl-diffusers.safetensors"
    convert(kohya_file, "diffusers", diffusers_file)
    net = LoRANetwork(tuple(xl.text_encoders), xl.unet, dim=4, alpha=2.0)
    with pytest.raises(TrainError) as caught:
        net.load_weights(diffusers_file)
    text = str(caught.value)
    assert "\n" not in text and str(diffusers_file) in text and "diffusers-style" in text
    assert f"lora-tui lora convert {diffusers_file} --to kohya" in text
    with pytest.raises(TrainError, match="--to kohya"):  # --dim_from_weights reads the file the same way
        LoRANetwork.from_weights(diffusers_file, tuple(xl.text_encoders), xl.unet)


def test_kohya_names_in_diffusers_unet_layout_load_as_the_original_layout_on_sdxl(xl, kohya_file: Path,
                                                                                  tmp_path: Path) -> None:
    state_dict, meta = load_lora(kohya_file)
    renamed = {}
    for key, value in state_dict.items():
        module, _, tail = key.partition(".")
        if module.startswith("lora_unet_"):
            module = "lora_unet_" + kohya_to_path(module)[1].replace(".", "_")  # lora_unet_down_blocks_1_…
        renamed[f"{module}.{tail}"] = value
    assert any(k.startswith("lora_unet_down_blocks_") for k in renamed)
    odd = tmp_path / "xl-diffusers-layout.safetensors"
    save_lora(odd, renamed, meta)

    continued = LoRANetwork(tuple(xl.text_encoders), xl.unet, dim=4, alpha=2.0)
    info = continued.load_weights(odd)
    assert info.loaded_keys == len(state_dict) and not info.missing_keys
    rebuilt = LoRANetwork.from_weights(odd, tuple(xl.text_encoders), xl.unet)
    for net in (continued, rebuilt):
        own = net.state_dict()
        assert set(own) == set(state_dict)
        assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in state_dict.items())


def test_the_trainer_refuses_a_diffusers_style_network_weights_in_one_line(kohya_file: Path, tmp_path: Path,
                                                                            tiny_sdxl_dir: Path) -> None:
    diffusers_file = tmp_path / "xl-diffusers.safetensors"
    convert(kohya_file, "diffusers", diffusers_file)
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir,
                        training={"max_train_steps": 1, "network_weights": str(diffusers_file)})
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 1
    error = next(e for e in events(run) if e["kind"] == "error")
    assert "\n" not in error["message"] and str(diffusers_file) in error["message"]
    assert "lora-tui lora convert" in error["message"] + str(error.get("hint", ""))
    assert status(run)["state"] == "failed"


def test_an_sdxl_network_weights_file_labelled_sd_v1_in_diffusers_layout_still_continues_on_sdxl(
        xl, kohya_file: Path, tmp_path: Path) -> None:
    """Metadata a merge or hand edit left wrong: the 2048-wide cross-attention and lora_te1_/lora_te2_
    keys say SDXL and win, so the diffusers-layout U-Net names are renamed as for any SDXL file."""
    state_dict, meta = load_lora(kohya_file)
    renamed = {}
    for key, value in state_dict.items():
        module, _, tail = key.partition(".")
        if module.startswith("lora_unet_"):
            module = "lora_unet_" + kohya_to_path(module)[1].replace(".", "_")
        renamed[f"{module}.{tail}"] = value
    wrong = tmp_path / "xl-labelled-sd1.safetensors"
    save_lora(wrong, renamed, {**meta, "ss_base_model_version": "sd_v1", "ss_v2": "False",
                               "modelspec.architecture": "stable-diffusion-v1/lora"})
    info = LoRANetwork(tuple(xl.text_encoders), xl.unet, dim=4, alpha=2.0).load_weights(wrong)
    assert info.loaded_keys == len(state_dict) and not info.missing_keys

"""SDXL LoRA files: sd-scripts' SDXL metadata, and diffusers' StableDiffusionXLPipeline loads and fuses them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl
from lora_tui.train.network.file import build_metadata, load_lora, save_lora
from lora_tui.train.network.lora import LoRANetwork
from tests.train.test_lora_file import _Warnings


def test_sdxl_metadata_has_sd_scripts_sdxl_ids() -> None:
    """sdxl_train_network.py: ss_base_model_version sdxl_base_v1-0; sai_model_spec: the SDXL architecture, Stability
    AI's implementation for an SDXL LoRA, 1024×1024 unless the run's resolution says otherwise."""
    meta = build_metadata({"sdxl": True, "output_name": "xl", "network_dim": 8, "network_alpha": 4.0,
                           "training_finished_at": 1700000100.0})
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_v2"] == "False"
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_network_alpha"] == "4.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert meta["modelspec.resolution"] == "1024x1024" and meta["modelspec.prediction_type"] == "epsilon"
    assert "ss_sdxl" not in meta
    sized = build_metadata({"base_model_version": "sdxl_base_v1-0", "resolution": (896, 1152)})
    assert sized["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert sized["modelspec.resolution"] == "896x1152"
    minimal = build_metadata({"sdxl": True}, minimal=True)
    assert minimal["ss_base_model_version"] == "sdxl_base_v1-0"


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory: pytest.TempPathFactory):
    from diffusers import StableDiffusionXLPipeline

    folder = make_tiny_sdxl(tmp_path_factory.mktemp("xl") / "model")
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encoders(pipe) -> tuple[torch.nn.Module, torch.nn.Module]:
    return pipe.text_encoder, pipe.text_encoder_2


def trained_file(pipe, path: Path, conv_dim: int | None) -> LoRANetwork:
    """A network with random (non-zero) weights saved as an SDXL LoRA file at `path`."""
    net = LoRANetwork(encoders(pipe), pipe.unet, dim=4, alpha=2.0, conv_dim=conv_dim, conv_alpha=1.0)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    net.save_weights(path, build_metadata({"sdxl": True, "output_name": path.stem}))
    return net


def outputs(pipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both encoders' penultimate states and one U-Net prediction (sharper than images: no clamping)."""
    g = torch.Generator().manual_seed(3)
    ids = pipe.tokenizer("sks dog smile", padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids2 = pipe.tokenizer_2("sks dog smile", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        h1 = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        out2 = pipe.text_encoder_2(ids2, output_hidden_states=True)
        h2, pooled = out2.hidden_states[-2], out2.text_embeds
        sizes = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
        pred = pipe.unet(torch.randn(1, 4, 8, 8, generator=g), 500, encoder_hidden_states=torch.cat([h1, h2], -1),
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": sizes}).sample
    return h1, h2, pred


def load_warnings(pipe, folder: Path, weight_name: str) -> list[str]:
    """pipe.load_lora_weights, returning the unexpected/missing-key warnings diffusers and transformers only log."""
    with _Warnings() as caught:
        pipe.load_lora_weights(str(folder), weight_name=weight_name)
    return [m for m in caught.messages if "unexpected" in m.lower() or "missing" in m.lower()]


def test_the_warning_capture_sees_a_key_diffusers_cannot_place(tiny_pipe, tmp_path: Path) -> None:
    """Control for the loading test: an extra U-Net or text-encoder key is reported ('no warnings' means something)."""
    trained_file(tiny_pipe, tmp_path / "xl.safetensors", conv_dim=None)
    sd, meta = load_lora(tmp_path / "xl.safetensors")
    for name, width in (("lora_unet_input_blocks_4_1_bogus", 16), ("lora_te1_text_model_encoder_layers_0_bogus", 16)):
        bogus = {f"{name}.lora_down.weight": torch.zeros(4, width), f"{name}.lora_up.weight": torch.zeros(width, 4)}
        save_lora(tmp_path / "bogus" / f"{name}.safetensors", {**sd, **bogus}, meta)
        assert load_warnings(copy.deepcopy(tiny_pipe), tmp_path / "bogus", f"{name}.safetensors")


def render(pipe) -> np.ndarray:
    out = pipe("sks dog smile", num_inference_steps=2, guidance_scale=5.0, height=64, width=64,
               generator=torch.Generator().manual_seed(0), output_type="np")
    return np.asarray(out.images)


@pytest.mark.parametrize("conv_dim", [None, 2], ids=["linear", "conv"])
def test_diffusers_sdxl_pipeline_loads_our_file_equal_to_our_own_merge(tiny_pipe, tmp_path: Path,
                                                                        conv_dim: int | None) -> None:
    base = tiny_pipe
    loaded, ours = copy.deepcopy(base), copy.deepcopy(base)
    net = trained_file(base, tmp_path / "xl.safetensors", conv_dim)

    assert load_warnings(loaded, tmp_path, "xl.safetensors") == []
    injected = [n for part in (loaded.unet, loaded.text_encoder, loaded.text_encoder_2)
                for n, m in part.named_modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0]
    assert len(injected) == len(net.loras)  # every module of the file became a peft LoRA layer

    # our own loader reads the file back and merges it: the same model as diffusers made
    again = LoRANetwork.from_weights(tmp_path / "xl.safetensors", encoders(ours), ours.unet)
    assert again.counts == net.counts
    again.merge_into_base()
    for got, want, plain in zip(outputs(loaded), outputs(ours), outputs(base)):
        assert (want - plain).abs().max() > 1e-2  # the LoRA changes each part: the comparison is not vacuous
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_diffusers_fuse_changes_the_unet_weights_and_the_images(tiny_pipe, tmp_path: Path) -> None:
    base = tiny_pipe
    fused = copy.deepcopy(base)
    trained_file(base, tmp_path / "xl.safetensors", conv_dim=2)
    fused.load_lora_weights(str(tmp_path), weight_name="xl.safetensors")
    fused.fuse_lora()
    fused.unload_lora_weights()
    weight = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(fused.unet.state_dict()[weight], base.unet.state_dict()[weight])
    conv = "down_blocks.0.resnets.0.conv1.weight"
    assert not torch.equal(fused.unet.state_dict()[conv], base.unet.state_dict()[conv])
    assert np.abs(render(fused) - render(base)).max() > 1e-2


def test_our_loader_reads_the_sdxl_file_back_with_its_metadata(tiny_pipe, tmp_path: Path) -> None:
    net = trained_file(tiny_pipe, tmp_path / "xl.safetensors", conv_dim=None)
    state_dict, meta = load_lora(tmp_path / "xl.safetensors")
    assert set(state_dict) == set(net.state_dict())
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert all(float(v) == 2.0 for k, v in state_dict.items() if k.endswith(".alpha"))  # the real alpha
    cont = LoRANetwork(encoders(tiny_pipe), tiny_pipe.unet, dim=4, alpha=2.0)
    info = cont.load_weights(tmp_path / "xl.safetensors")  # --network_weights continuation
    assert info.loaded_keys == len(state_dict) and not info.missing_keys
    assert json.loads(json.dumps(info.metadata))["ss_output_name"] == "xl"

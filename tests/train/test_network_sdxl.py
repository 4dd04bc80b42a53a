"""LoRANetwork on SDXL: sd-scripts' SDXL names (lora_te1_/lora_te2_, lora_unet_ in the original layout),
its module set on the real SDXL 1.0 configs, and the same apply/save/load path as SD1.x."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lora_tui.core.errors import TrainError
from lora_tui.train.model.sdxl_load import SDXL_CONFIG_DIR
from lora_tui.train.model.tiny_sdxl import build_tiny_sdxl, sdxl_ldm_state_dict
from lora_tui.train.network.file import save_lora
from lora_tui.train.network.lora import LoRANetwork

FIXTURES = Path(__file__).with_name("fixtures_sdxl_lora")


def sd_scripts_modules() -> dict[str, tuple[str, str]]:
    """{name: (lora_down shape, 'default' | 'conv')} as sd-scripts' create_network made them (see README)."""
    rows = (line.split() for line in (FIXTURES / "sdxl_lora_modules.txt").read_text().splitlines() if line)
    return {name: (shape, kind) for name, shape, kind in rows}


@pytest.fixture(scope="module")
def real_sdxl() -> tuple[nn.Module, nn.Module, nn.Module]:
    """SDXL 1.0 base's text encoders and U-Net from the shipped configs, on the meta device (no memory)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(name: str) -> dict:
        return json.loads((SDXL_CONFIG_DIR / name / "config.json").read_text())

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config("unet"))
        te1 = CLIPTextModel(CLIPTextConfig(**config("text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2")))
    return te1, te2, unet


@pytest.fixture
def tiny() -> dict[str, nn.Module]:
    return build_tiny_sdxl(seed=0)


def shapes(net: LoRANetwork) -> dict[str, str]:
    return {m.lora_name: "x".join(str(d) for d in m.lora_down.weight.shape) for m in net.loras}


def test_real_sdxl_counts_equal_sd_scripts(real_sdxl) -> None:
    """sd-scripts (48d368fa, create_network on its SdxlUNet2DConditionModel, meta device) creates TE 72 + 192 and
    U-Net 722 modules; with conv_dim 788, 38 of them 3×3 convs (fixtures_sdxl_lora/README.md)."""
    te1, te2, unet = real_sdxl
    net = LoRANetwork((te1, te2), unet, dim=4, alpha=1.0)
    assert net.counts == {"text_encoder": 264, "text_encoder_1": 72, "text_encoder_2": 192, "unet": 722}
    conv = LoRANetwork((te1, te2), unet, dim=4, alpha=1.0, conv_dim=4)
    assert conv.counts["unet"] == 788
    assert sum(m.is_conv and m.lora_down.kernel_size == (3, 3) for m in conv.unet_loras) == 38


def test_real_sdxl_module_names_and_shapes_equal_sd_scripts(real_sdxl) -> None:
    te1, te2, unet = real_sdxl
    theirs = sd_scripts_modules()
    default = {name: shape for name, (shape, kind) in theirs.items() if kind == "default"}
    assert shapes(LoRANetwork((te1, te2), unet, dim=4, alpha=1.0)) == default
    conv = LoRANetwork((te1, te2), unet, dim=4, alpha=1.0, conv_dim=4)
    assert shapes(conv) == {name: shape for name, (shape, _) in theirs.items()}


def test_real_sdxl_file_keys_equal_sd_scripts(real_sdxl) -> None:
    te1, te2, unet = real_sdxl
    theirs = {f"{name}.{t}" for name in sd_scripts_modules() for t in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert set(LoRANetwork((te1, te2), unet, dim=4, alpha=1.0, conv_dim=4).state_dict()) == theirs


def test_sdxl_unet_names_follow_diffusers_own_checkpoint_converter(tiny) -> None:
    """Each adapter's SGM name is where diffusers' single-file converter takes that layer's weight from."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = tiny["unet"]
    ldm = {k: v for k, v in sdxl_ldm_state_dict(tiny).items() if k.startswith("model.diffusion_model.")}
    ldm = {k: torch.full_like(v, float(i)) for i, (k, v) in enumerate(sorted(ldm.items()))}  # tag every tensor
    as_diffusers = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    net = LoRANetwork(None, unet, dim=2, conv_dim=2)
    paths = {id(m): p for p, m in unet.named_modules()}
    assert len(net.unet_loras) > 100
    for lora in net.unet_loras:
        sgm = "model.diffusion_model." + lora.lora_name.removeprefix("lora_unet_")
        diffusers_key = paths[id(lora.org_module)] + ".weight"
        tagged = ldm[next(k for k in ldm if k.replace(".", "_") == sgm.replace(".", "_") + "_weight")]
        assert torch.equal(as_diffusers[diffusers_key], tagged), lora.lora_name


def test_tiny_sdxl_names_prefixes_and_order(tiny) -> None:
    net = LoRANetwork((tiny["text_encoder"], tiny["text_encoder_2"]), tiny["unet"], dim=2, alpha=1.0)
    names = [m.lora_name for m in net.loras]
    # three layers × 6 in each encoder; te1 first, then te2, then the U-Net (sd-scripts' order)
    assert net.counts == {"text_encoder": 36, "text_encoder_1": 18, "text_encoder_2": 18, "unet": len(net.unet_loras)}
    assert all(n.startswith("lora_te1_text_model_encoder_layers_") for n in names[:18])
    assert all(n.startswith("lora_te2_text_model_encoder_layers_") for n in names[18:36])
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in names
    assert "lora_unet_middle_block_1_transformer_blocks_1_ff_net_0_proj" in names
    assert "lora_unet_output_blocks_0_1_proj_out" in names
    assert not any("down_blocks" in n or "mid_block_" in n or "up_blocks" in n for n in names)
    assert net.is_sdxl


def test_sd1_network_is_not_sdxl_and_keeps_diffusers_names() -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    net = LoRANetwork(None, unet, dim=2)
    assert not net.is_sdxl
    assert all(m.lora_name.startswith("lora_unet_down_blocks_") or m.lora_name.startswith("lora_unet_mid_block_")
               or m.lora_name.startswith("lora_unet_up_blocks_") for m in net.unet_loras)


def _unet_out(tiny: dict[str, nn.Module]) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    unet = tiny["unet"]
    latents = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 7, unet.config.cross_attention_dim, generator=g)
    pooled = torch.randn(1, 32, generator=g)
    sizes = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    with torch.no_grad():
        return unet(latents, 10, encoder_hidden_states=text,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": sizes}).sample


def _randomize(net: LoRANetwork) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_apply_changes_the_sdxl_unet_and_remove_restores(tiny) -> None:
    before = _unet_out(tiny)
    net = LoRANetwork((tiny["text_encoder"], tiny["text_encoder_2"]), tiny["unet"], dim=2, alpha=1.0, conv_dim=2)
    _randomize(net)
    net.apply_to()
    assert not torch.allclose(_unet_out(tiny), before)
    net.remove()
    assert torch.equal(_unet_out(tiny), before)


def test_save_then_load_and_from_weights_round_trip(tiny, tmp_path: Path) -> None:
    encoders = (tiny["text_encoder"], tiny["text_encoder_2"])
    net = LoRANetwork(encoders, tiny["unet"], dim=2, alpha=1.0, conv_dim=2)
    _randomize(net)
    path = tmp_path / "xl.safetensors"
    net.save_weights(path, {"ss_base_model_version": "sdxl_base_v1-0"})
    again = LoRANetwork(encoders, tiny["unet"], dim=2, alpha=1.0, conv_dim=2)
    info = again.load_weights(path)
    assert info.loaded_keys == len(net.state_dict()) and not info.missing_keys
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())
    rebuilt = LoRANetwork.from_weights(path, encoders, tiny["unet"])
    assert rebuilt.counts == net.counts and set(rebuilt.state_dict()) == set(net.state_dict())


def test_an_sd15_lora_on_sdxl_is_one_line_naming_the_file_and_its_base(tiny, tmp_path: Path) -> None:
    sd15 = {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(2, 768),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(768, 2),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 320)}
    path = tmp_path / "sd15.safetensors"
    save_lora(path, sd15, {"ss_base_model_version": "sd_v1"})
    net = LoRANetwork((tiny["text_encoder"], tiny["text_encoder_2"]), tiny["unet"], dim=2)
    for attempt in (lambda: net.load_weights(path),
                    lambda: LoRANetwork.from_weights(path, (tiny["text_encoder"], tiny["text_encoder_2"]),
                                                     tiny["unet"])):
        with pytest.raises(TrainError) as err:
            attempt()
        line = str(err.value)
        assert "\n" not in line and str(path) in line
        assert "SD1.x/SD2.x (sd_v1)" in line and "base model is SDXL" in line


def test_an_sdxl_lora_on_sd1_is_one_line_saying_sdxl(tiny, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    xl = LoRANetwork((tiny["text_encoder"], tiny["text_encoder_2"]), tiny["unet"], dim=2)
    path = tmp_path / "xl.safetensors"
    xl.save_weights(path)  # no metadata: told from the key names
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    with pytest.raises(TrainError, match=r"trained for SDXL, the base model is SD1\.x/SD2\.x") as err:
        LoRANetwork(tiny["text_encoder"], unet, dim=2).load_weights(path)
    assert str(path) in str(err.value)


def test_text_encoder_lr_as_a_list_takes_its_first_value_for_both_encoders(tiny) -> None:
    """sd-scripts' train_network.py with networks.lora: text_encoder_lr = [a, b] → a for TE1 and TE2; [] → unset."""
    net = LoRANetwork((tiny["text_encoder"], tiny["text_encoder_2"]), tiny["unet"], dim=2)
    groups = {g["name"]: g for g in net.prepare_optimizer_params([3e-5, 1e-5], 1e-4, 1e-3)}
    assert groups["textencoder"]["lr"] == 3e-5 and groups["unet"]["lr"] == 1e-4
    assert len(groups["textencoder"]["params"]) == 2 * 36  # both encoders' adapters, down and up
    fallback = {g["name"]: g["lr"] for g in net.prepare_optimizer_params([], 1e-4, 1e-3)}
    assert fallback == {"textencoder": 1e-3, "unet": 1e-4}

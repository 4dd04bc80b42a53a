"""LoRANetwork: sd-scripts' targets, names, alpha maths, patching, optimizer groups, reloading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from lora_tui.core.errors import TrainError
from lora_tui.train.network.file import save_lora
from lora_tui.train.network.lora import LoRAModule, LoRANetwork

TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": (8, 16),
             "layers_per_block": 1, "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
             "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "cross_attention_dim": 16,
             "attention_head_dim": 2, "norm_num_groups": 4}
TINY_CLIP = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "vocab_size": 64, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
# the real SD1.5 shapes, only ever built on the meta device
SD15_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "block_out_channels": (320, 640, 1280, 1280),
             "layers_per_block": 2, "cross_attention_dim": 768, "attention_head_dim": 8,
             "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
             "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3}
SD15_CLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "max_position_embeddings": 77, "projection_dim": 768}


@pytest.fixture
def models() -> tuple[CLIPTextModel, UNet2DConditionModel]:
    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(**TINY_CLIP)).eval()
    unet = UNet2DConditionModel(**TINY_UNET).eval()
    return te, unet


def run(te: CLIPTextModel, unet: UNet2DConditionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-encoder hidden states and a UNet prediction on fixed inputs."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 64, (2, 8), generator=g)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        hidden = te(ids)[0]
        pred = unet(latents, 10, encoder_hidden_states=torch.randn(2, 8, 16, generator=g)).sample
    return hidden, pred


def randomize(network: LoRANetwork, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_tiny_names_counts_and_tensors(models) -> None:
    te, unet = models
    net = LoRANetwork(te, unet, dim=4, alpha=1.0)
    assert net.counts == {"text_encoder": 12, "unet": 48}  # 2 layers × 6; 4 transformers × 12
    sd = net.state_dict()
    assert len(sd) == 3 * 60
    names = {k.partition(".")[0] for k in sd}
    assert {k.partition(".")[2] for k in sd} == {"lora_down.weight", "lora_up.weight", "alpha"}
    for name in ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                 "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0",
                 "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj",
                 "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2",
                 "lora_unet_mid_block_attentions_0_proj_in", "lora_unet_up_blocks_1_attentions_1_proj_out",
                 "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
                 "lora_te_text_model_encoder_layers_1_mlp_fc2"):
        assert name in names
    assert not any("resnets" in n or "conv_in" in n or "time_embedding" in n for n in names)
    # proj_in is a 1×1 conv here: down keeps the kernel, up is 1×1
    assert sd["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"].shape == (4, 16, 1, 1)
    assert sd["lora_unet_mid_block_attentions_0_proj_in.lora_up.weight"].shape == (16, 4, 1, 1)
    q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    assert sd[f"{q}.lora_down.weight"].shape == (4, 16) and sd[f"{q}.lora_up.weight"].shape == (16, 4)
    assert sd[f"{q}.alpha"].ndim == 0 and float(sd[f"{q}.alpha"]) == 1.0
    assert all(float(v.abs().sum()) == 0 for k, v in sd.items() if k.endswith("lora_up.weight"))


def test_sd15_counts_on_meta() -> None:
    """sd-scripts logs TE 72 / U-Net 192 for SD1.5 (278 U-Net modules with conv_dim)."""
    with torch.device("meta"):
        te = CLIPTextModel(CLIPTextConfig(**SD15_CLIP))
        unet = UNet2DConditionModel(**SD15_UNET)
    net = LoRANetwork(te, unet, dim=1, alpha=1.0)
    assert net.counts == {"text_encoder": 72, "unet": 192}
    names = {lora.lora_name for lora in net.loras}
    assert "lora_te_text_model_encoder_layers_11_mlp_fc2" in names
    assert "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_v" in names
    conv = LoRANetwork(None, unet, dim=1, alpha=1.0, conv_dim=1)
    assert conv.counts == {"text_encoder": 0, "unet": 278}


def test_conv_dim_adds_resnet_and_sampler_modules(models) -> None:
    te, unet = models
    net = LoRANetwork(te, unet, dim=4, alpha=2.0, conv_dim=3, conv_alpha=1.5)
    by_name = {lora.lora_name: lora for lora in net.unet_loras}
    # 8 resnets × (conv1, conv2, time_emb_proj) + 5 conv_shortcut + 1 downsampler + 1 upsampler
    assert len(by_name) == 48 + 24 + 5 + 2
    conv1 = by_name["lora_unet_down_blocks_0_resnets_0_conv1"]
    assert (conv1.lora_dim, float(conv1.alpha), conv1.scale) == (3, 1.5, 0.5)
    assert conv1.lora_down.weight.shape == (3, 8, 3, 3) and conv1.lora_up.weight.shape == (8, 3, 1, 1)
    for linear_or_1x1 in ("lora_unet_down_blocks_0_resnets_0_time_emb_proj",
                          "lora_unet_up_blocks_0_resnets_0_conv_shortcut"):
        assert (by_name[linear_or_1x1].lora_dim, float(by_name[linear_or_1x1].alpha)) == (4, 2.0)
    assert "lora_unet_down_blocks_0_downsamplers_0_conv" in by_name
    assert "lora_unet_up_blocks_0_upsamplers_0_conv" in by_name
    assert by_name["lora_unet_down_blocks_0_downsamplers_0_conv"].lora_down.stride == (2, 2)
    assert not any(n.startswith(("lora_unet_conv_in", "lora_unet_conv_out", "lora_unet_time_embedding"))
                   for n in by_name)
    # conv_alpha defaults to 1.0, as sd-scripts' network_args
    default = LoRANetwork(None, unet, dim=4, conv_dim=2)
    assert float(default.state_dict()["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]) == 1.0


def test_unet_only_and_te_only(models) -> None:
    te, unet = models
    unet_only = LoRANetwork(te, unet, train_text_encoder=False)
    assert all(k.startswith("lora_unet_") for k in unet_only.state_dict())
    assert unet_only.counts == {"text_encoder": 0, "unet": 48}
    te_only = LoRANetwork(te, unet, train_unet=False)
    assert all(k.startswith("lora_te_") for k in te_only.state_dict())
    assert te_only.counts == {"text_encoder": 12, "unet": 0}


@pytest.mark.parametrize(("alpha", "real", "scale"), [(1.0, 1.0, 0.125), (16, 16.0, 2.0), (None, 8.0, 1.0),
                                                      (0, 8.0, 1.0)])
def test_alpha_is_stored_real_and_scale_is_alpha_over_dim(models, alpha, real, scale) -> None:
    te, unet = models
    net = LoRANetwork(te, unet, dim=8, alpha=alpha)
    assert all(float(v) == real for k, v in net.state_dict().items() if k.endswith(".alpha"))
    assert all(lora.scale == scale for lora in net.loras)


def test_zero_init_then_training_changes_output_and_remove_restores(models) -> None:
    te, unet = models
    te.requires_grad_(False)
    unet.requires_grad_(False)
    base = run(te, unet)
    net = LoRANetwork(te, unet, dim=4, alpha=4)
    net.apply_to()
    net.apply_to()  # idempotent
    assert net.is_applied
    for got, want in zip(run(te, unet), base):
        assert torch.equal(got, want)
    opt = torch.optim.AdamW(net.prepare_optimizer_params(1e-2, 1e-2, 1e-3))
    net.train()
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        ids = torch.randint(2, 64, (2, 8), generator=g)
        hidden = te(ids)[0]
        pred = unet(torch.randn(2, 4, 8, 8, generator=g), 10, encoder_hidden_states=hidden).sample
        loss = pred.pow(2).mean() + hidden.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    net.eval()
    trained = run(te, unet)
    assert not torch.allclose(trained[0], base[0]) and not torch.allclose(trained[1], base[1])
    assert all(p.grad is None for p in list(te.parameters()) + list(unet.parameters()))
    net.remove()
    assert not net.is_applied
    assert all("forward" not in m.__dict__ for m in list(te.modules()) + list(unet.modules()))
    for got, want in zip(run(te, unet), base):
        assert torch.equal(got, want)


def test_multiplier_and_dropout(models) -> None:
    te, unet = models
    base = run(te, unet)[0]
    net = LoRANetwork(te, unet, dim=4, alpha=4, dropout=0.5, train_unet=False)
    randomize(net)
    net.apply_to()
    net.eval()
    on = run(te, unet)[0]
    assert torch.equal(on, run(te, unet)[0])  # no dropout outside training
    net.set_multiplier(0.0)
    assert torch.allclose(run(te, unet)[0], base, atol=1e-6)
    net.remove()


def test_prepare_optimizer_params_groups(models) -> None:
    te, unet = models
    net = LoRANetwork(te, unet)
    groups = net.prepare_optimizer_params(5e-5, None, 1e-4)
    assert [(g["name"], g["lr"]) for g in groups] == [("textencoder", 5e-5), ("unet", 1e-4)]
    assert len(groups[0]["params"]) == 2 * 12 and len(groups[1]["params"]) == 2 * 48
    torch.optim.AdamW(groups)  # torch accepts the extra "name" key
    frozen_te = net.prepare_optimizer_params(0, 1e-4, 1e-4)
    assert [g["name"] for g in frozen_te] == ["unet"]
    assert not any(p.requires_grad for p in net.text_encoder_params())
    unet_only = LoRANetwork(te, unet, train_text_encoder=False)
    assert [g["name"] for g in unet_only.prepare_optimizer_params(1e-4, 1e-4, 1e-4)] == ["unet"]


def test_merge_into_base_matches_patched_forward(models) -> None:
    te, unet = models
    net = LoRANetwork(te, unet, dim=4, alpha=2, conv_dim=2, conv_alpha=1, multiplier=0.7)
    randomize(net)
    net.apply_to()
    patched = run(te, unet)
    net.merge_into_base()
    assert not net.is_applied
    merged = run(te, unet)
    for got, want in zip(merged, patched):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_from_weights_rebuilds_the_same_network(models, tmp_path: Path) -> None:
    te, unet = models
    net = LoRANetwork(te, unet, dim=4, alpha=1, conv_dim=2, conv_alpha=3)
    randomize(net)
    net.apply_to()
    want = run(te, unet)
    net.remove()
    path = tmp_path / "x.safetensors"
    save_lora(path, net.state_dict(), {"ss_network_dim": "4"})
    sd = dict(net.state_dict())
    del sd["lora_unet_mid_block_attentions_0_proj_in.alpha"]  # an old file without alpha → alpha = dim
    for source in (path, sd):
        again = LoRANetwork.from_weights(source, te, unet)
        assert again.counts == net.counts
        assert not again.is_applied
        again.apply_to()
        got = run(te, unet)
        again.remove()
        if source is path:
            for a, b in zip(got, want):
                assert torch.allclose(a, b, atol=1e-6)
    lora = next(m for m in again.loras if m.lora_name == "lora_unet_mid_block_attentions_0_proj_in")
    assert (float(lora.alpha), lora.scale) == (4.0, 1.0)
    conv = next(m for m in again.loras if m.lora_name == "lora_unet_down_blocks_0_resnets_0_conv1")
    assert (conv.lora_dim, float(conv.alpha)) == (2, 3.0)


def test_load_weights_continues_and_rejects_what_does_not_fit(models, tmp_path: Path) -> None:
    te, unet = models
    src = LoRANetwork(te, unet, dim=4, alpha=2)
    randomize(src)
    path = tmp_path / "prev.safetensors"
    save_lora(path, src.state_dict(), {"ss_steps": "100"})
    dst = LoRANetwork(te, unet, dim=4, alpha=1)
    info = dst.load_weights(path)
    assert info.loaded_keys == 180 and info.missing_keys == [] and info.metadata["ss_steps"] == "100"
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))
    assert all(lora.scale == 0.5 for lora in dst.loras)  # the file's alpha drives the scale

    unknown = dict(src.state_dict())
    unknown["lora_unet_nowhere_to_q.lora_down.weight"] = torch.zeros(4, 16)
    with pytest.raises(TrainError, match="match no adapter") as err:
        dst.load_weights(unknown)
    assert "\n" not in str(err.value)
    with pytest.raises(TrainError, match="shape"):
        LoRANetwork(te, unet, dim=8).load_weights(path)
    with pytest.raises(TrainError, match="match no adapter"):
        LoRANetwork(te, unet, train_text_encoder=False).load_weights(path)
    with pytest.raises(TrainError, match="not a LoRA tensor"):
        LoRANetwork.from_weights({"lora_unet_x.hada_w1_a": torch.zeros(1)}, te, unet)
    partial = {k: v for k, v in src.state_dict().items() if k.startswith("lora_unet_")}
    assert len(LoRANetwork(te, unet).load_weights(partial).missing_keys) == 36


def test_autocast_saves_no_second_copy_of_adapted_inputs_and_gives_the_same_output() -> None:
    """Under bf16 autocast the adapter lets autocast cast its input: an explicit cast to the fp32 LoRA
    dtype made autocast cast it back, and that second copy of every adapted layer's input was kept
    for the backward beside the base layer's (issue 13's VRAM)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 32).requires_grad_(False)
    lora = LoRAModule("lora_unet_proj", layer, dim=4, alpha=4)
    torch.nn.init.normal_(lora.lora_up.weight)
    lora.apply_to()
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = lora._org_forward(x) + lora.scale * lora.lora_up(lora.lora_down(x.float()))
    assert torch.allclose(out.float(), want.float(), rtol=1e-2, atol=1e-2)
    inputs = [t for t in saved if t.shape == x.shape]
    assert inputs and all(t.data_ptr() == x.data_ptr() for t in inputs)

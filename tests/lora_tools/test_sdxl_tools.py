"""`lora inspect` and `lora convert` on SDXL LoRAs (lora_te1_/lora_te2_, U-Net in the original layout)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.train.lora_tools.convert import kohya_to_path, path_to_kohya
from lora_tui.train.network.file import build_metadata, load_lora, save_lora


@pytest.fixture(scope="module")
def sdxl_pipe(tmp_path_factory: pytest.TempPathFactory):
    from diffusers import StableDiffusionXLPipeline

    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path_factory.mktemp("xl") / "model")
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_lora(sdxl_pipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SDXL LoRA on the tiny model: rank 4 / alpha 2, conv 3×3 at rank 2 / alpha 1, random weights."""
    from lora_tui.train.network.lora import LoRANetwork

    net = LoRANetwork((sdxl_pipe.text_encoder, sdxl_pipe.text_encoder_2), sdxl_pipe.unet, dim=4, alpha=2.0,
                      conv_dim=2, conv_alpha=1.0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    path = tmp_path_factory.mktemp("xl-lora") / "xl.safetensors"
    net.save_weights(path, build_metadata({"sdxl": True, "output_name": "xl", "network_dim": 4, "network_alpha": 2.0}))
    return path


def test_sdxl_kohya_names_map_to_diffusers_paths_and_back() -> None:
    cases = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q":
            ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
        "lora_unet_middle_block_1_transformer_blocks_9_ff_net_0_proj":
            ("unet", "mid_block.attentions.0.transformer_blocks.9.ff.net.0.proj"),
        "lora_unet_output_blocks_8_0_skip_connection": ("unet", "up_blocks.2.resnets.2.conv_shortcut"),
        "lora_unet_input_blocks_3_0_op": ("unet", "down_blocks.0.downsamplers.0.conv"),
        "lora_unet_output_blocks_5_2_conv": ("unet", "up_blocks.1.upsamplers.0.conv"),
        "lora_unet_middle_block_2_emb_layers_1": ("unet", "mid_block.resnets.1.time_emb_proj"),
        "lora_te1_text_model_encoder_layers_11_mlp_fc2": ("text_encoder", "text_model.encoder.layers.11.mlp.fc2"),
        "lora_te2_text_model_encoder_layers_31_self_attn_out_proj":
            ("text_encoder_2", "text_model.encoder.layers.31.self_attn.out_proj"),
    }
    for name, (part, path) in cases.items():
        assert kohya_to_path(name) == (part, path)
        assert path_to_kohya(part, path, sdxl=True) == name


def test_inspect_says_sdxl_with_te1_te2_and_unet_counts(sdxl_lora: Path, capsys) -> None:
    assert main(["lora", "inspect", str(sdxl_lora), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "SDXL" and report["style"] == "kohya"
    c = report["modules"]
    assert (c["text_encoder_1"], c["text_encoder_2"]) == (18, 18) and c["text_encoder"] == 36
    adapters = load_lora(sdxl_lora)[0]
    unet = {k.partition(".")[0] for k in adapters if k.startswith("lora_unet_")}
    conv3x3 = {k.partition(".")[0] for k, v in adapters.items() if k.endswith("lora_down.weight") and v.ndim == 4
               and v.shape[2:] == (3, 3)}
    assert c["unet"] == len(unet) > 100 and c["conv3x3"] == len(conv3x3) > 0 and c["total"] == len(unet) + 36
    assert report["ranks"]["rank"] == 4 and report["ranks"]["conv_rank"] == 2
    assert report["training"]["base_model_version"] == "sdxl_base_v1-0"
    assert main(["lora", "inspect", str(sdxl_lora)]) == 0
    text = capsys.readouterr().out
    assert "architecture  SDXL" in text and "TE1 18, TE2 18" in text


def test_inspect_tells_sdxl_from_the_keys_without_metadata(sdxl_lora: Path, tmp_path: Path, capsys) -> None:
    bare = tmp_path / "bare.safetensors"
    save_lora(bare, load_lora(sdxl_lora)[0], {})
    assert main(["lora", "inspect", str(bare), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "SDXL" and report["modules"]["text_encoder_2"] == 18


@pytest.mark.parametrize("via", ["diffusers", "peft"])
def test_sdxl_kohya_to_other_and_back_is_exact_on_keys_and_close_on_values(sdxl_lora: Path, tmp_path: Path,
                                                                           via: str) -> None:
    mid = tmp_path / ("mid.safetensors" if via == "diffusers" else "mid-peft")
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(sdxl_lora), "--to", via, "--out", str(mid)]) == 0
    assert main(["lora", "convert", str(mid), "--to", "kohya", "--out", str(back)]) == 0
    original, again = load_lora(sdxl_lora)[0], load_lora(back)[0]
    assert sorted(again) == sorted(original)
    for key, value in original.items():
        assert torch.allclose(again[key].float(), value.float(), atol=1e-6), key
    if via == "diffusers":
        keys = load_lora(mid)[0]
        assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder", "text_encoder_2"}
        assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    else:
        assert sorted(p.name for p in mid.iterdir()) == ["text_encoder", "text_encoder_2", "unet"]


def test_a_diffusers_sdxl_file_without_metadata_is_told_by_its_second_encoder(sdxl_lora: Path, tmp_path: Path) -> None:
    mid = tmp_path / "mid.safetensors"
    assert main(["lora", "convert", str(sdxl_lora), "--to", "diffusers", "--out", str(mid)]) == 0
    tensors, meta = load_lora(mid)
    bare = tmp_path / "bare.safetensors"
    save_lora(bare, tensors, {"lora_adapter_metadata": meta["lora_adapter_metadata"]})
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(bare), "--to", "kohya", "--out", str(back)]) == 0
    assert sorted(load_lora(back)[0]) == sorted(load_lora(sdxl_lora)[0])


def test_the_diffusers_style_output_loads_in_the_sdxl_pipeline_like_the_kohya_file(sdxl_pipe, sdxl_lora: Path,
                                                                                    tmp_path: Path) -> None:
    """Same strength (alphas from lora_adapter_metadata) and no unplaced keys: fused weights equal the kohya file's."""
    from tests.train.test_lora_file import _Warnings

    out = tmp_path / "d.safetensors"
    assert main(["lora", "convert", str(sdxl_lora), "--to", "diffusers", "--out", str(out)]) == 0
    fused = {}
    for name, file in (("kohya", sdxl_lora), ("diffusers", out)):
        pipe = copy.deepcopy(sdxl_pipe)
        with _Warnings() as caught:
            pipe.load_lora_weights(str(file.parent), weight_name=file.name)
        assert not [m for m in caught.messages if "unexpected" in m.lower() or "missing" in m.lower()], name
        pipe.fuse_lora(components=["unet", "text_encoder", "text_encoder_2"], lora_scale=1.0)
        pipe.unload_lora_weights()
        fused[name] = {f"{part}.{k}": v.detach().clone() for part in ("unet", "text_encoder", "text_encoder_2")
                       for k, v in getattr(pipe, part).state_dict().items()}
    base = {f"{part}.{k}": v for part in ("unet", "text_encoder", "text_encoder_2")
            for k, v in getattr(sdxl_pipe, part).state_dict().items()}
    changed = [k for k in base if not torch.equal(fused["kohya"][k], base[k])]
    assert len(changed) > 100 and any(k.startswith("text_encoder_2.") for k in changed)
    for key in base:
        torch.testing.assert_close(fused["diffusers"][key], fused["kohya"][key], atol=1e-5, rtol=1e-5)


def test_resize_halves_an_sdxl_lora_and_keeps_it_sdxl(sdxl_lora: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r2.safetensors"
    assert main(["lora", "resize", str(sdxl_lora), "--dim", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["lora", "inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "SDXL" and report["ranks"]["rank"] == 2
    assert sorted(load_lora(out)[0]) == sorted(load_lora(sdxl_lora)[0])  # same modules, names kept


def test_merging_an_sdxl_lora_with_an_sd1_lora_is_one_line(sdxl_lora: Path, lora_file: Path, tmp_path: Path,
                                                           capsys) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["lora", "merge", str(sdxl_lora), str(lora_file), "--dim", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and lora_file.name in err and "SDXL" in err and "SD1.x/SD2.x" in err
    assert not out.exists()


def test_bake_into_an_sdxl_model_equals_adding_the_delta(sdxl_pipe, sdxl_lora: Path, tmp_path: Path) -> None:
    """The baked single file loads through the SDXL loader with each weight = base + 0.5 · the LoRA's delta."""
    from lora_tui.train.model.sdxl_load import load_sdxl_model
    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl
    from lora_tui.train.network.lora import LoRANetwork

    model = make_tiny_sdxl(tmp_path / "model")
    out = tmp_path / "baked.safetensors"
    assert main(["lora", "bake", str(model), str(sdxl_lora), "--weight", "0.5", "--out", str(out)]) == 0
    for name in ("tokenizer", "tokenizer_2"):  # the single file finds its tokenizers beside it
        (tmp_path / name).symlink_to(model / name)
    baked = load_sdxl_model(out)
    expected = copy.deepcopy(sdxl_pipe)  # the same seed-0 tiny model, merged by the network's own code
    LoRANetwork.from_weights(sdxl_lora, (expected.text_encoder, expected.text_encoder_2), expected.unet,
                             multiplier=0.5).merge_into_base()
    pairs = {"unet": (baked.unet, expected.unet, sdxl_pipe.unet),
             "te1": (baked.text_encoders[0], expected.text_encoder, sdxl_pipe.text_encoder),
             "te2": (baked.text_encoders[1], expected.text_encoder_2, sdxl_pipe.text_encoder_2)}
    for part, (got, want, base) in pairs.items():
        got_sd, base_sd = got.state_dict(), base.state_dict()
        for key, value in want.state_dict().items():
            torch.testing.assert_close(got_sd[key], value, atol=1e-6, rtol=1e-6)
        assert sum(not torch.equal(got_sd[k], v) for k, v in base_sd.items()) >= 18, part  # the delta is in

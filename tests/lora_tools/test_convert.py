"""`lora-tui lora convert`: kohya ↔ diffusers ↔ peft, checked with diffusers' own loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.train.lora_tools.convert import kohya_to_path
from lora_tui.train.network.file import load_lora


def test_kohya_names_map_to_diffusers_module_paths() -> None:
    assert kohya_to_path("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0") == (
        "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0")
    assert kohya_to_path("lora_unet_mid_block_resnets_1_conv_shortcut") == ("unet", "mid_block.resnets.1.conv_shortcut")
    assert kohya_to_path("lora_te_text_model_encoder_layers_11_self_attn_q_proj") == (
        "text_encoder", "text_model.encoder.layers.11.self_attn.q_proj")


@pytest.mark.parametrize("via", ["diffusers", "peft"])
def test_kohya_to_other_and_back_is_exact_on_keys_and_close_on_values(lora_file: Path, tmp_path: Path, via: str,
                                                                      capsys) -> None:
    mid = tmp_path / ("mid.safetensors" if via == "diffusers" else "mid-peft")
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(lora_file), "--to", via, "--out", str(mid)]) == 0
    assert main(["lora", "convert", str(mid), "--to", "kohya", "--out", str(back)]) == 0
    assert f"wrote {back}" in capsys.readouterr().out
    original, again = load_lora(lora_file)[0], load_lora(back)[0]
    assert sorted(again) == sorted(original)
    for key, value in original.items():
        assert torch.allclose(again[key].float(), value.float(), atol=1e-6), key


def _fused_weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v.detach().clone() for part in ("unet", "text_encoder")
            for k, v in getattr(pipe, part).state_dict().items() if "lora" not in k and k.endswith("weight")}


def _expected(tiny_model_dir: Path, lora_file: Path) -> dict[str, torch.Tensor]:
    from lora_tui.train.model.load import load_base_model
    from lora_tui.train.network.lora import LoRANetwork

    base = load_base_model(tiny_model_dir)
    LoRANetwork.from_weights(lora_file, base.text_encoder, base.unet).merge_into_base()
    return {f"{part}.{k}": v for part in ("unet", "text_encoder")
            for k, v in getattr(base, part).state_dict().items() if k.endswith("weight")}


@pytest.mark.parametrize("style", ["diffusers", "peft"])
def test_diffusers_loads_the_output_with_the_same_strength(lora_file: Path, tiny_model_dir: Path, tmp_path: Path,
                                                           style: str) -> None:
    from diffusers import StableDiffusionPipeline

    out = tmp_path / ("d.safetensors" if style == "diffusers" else "p")
    assert main(["lora", "convert", str(lora_file), "--to", style, "--out", str(out)]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir), safety_checker=None,
                                                   requires_safety_checker=False)
    if style == "diffusers":
        pipe.load_lora_weights(str(out))
    else:
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

        pipe.unet.load_lora_adapter(str(out / "unet"), weight_name="pytorch_lora_weights.safetensors",
                                    prefix=None, adapter_name="x")  # diffusers' loader for one model
        config = json.loads((out / "text_encoder" / "adapter_config.json").read_text())
        assert config.pop("peft_type") == "LORA" and config["r"] == 8
        inject_adapter_in_model(LoraConfig(**config), pipe.text_encoder, adapter_name="x")  # peft's own
        state = load_lora(out / "text_encoder" / "pytorch_lora_weights.safetensors")[0]
        state = {k.removeprefix("text_model.") if not hasattr(pipe.text_encoder, "text_model") else k: v
                 for k, v in state.items()}
        result = set_peft_model_state_dict(pipe.text_encoder, state, adapter_name="x")
        assert not [k for k in result.unexpected_keys if "lora" in k]
    pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)
    got, expected = _fused_weights(pipe), _expected(tiny_model_dir, lora_file)
    changed = 0
    for key, value in expected.items():
        if key in got:
            assert torch.allclose(got[key], value, atol=1e-5), key
            changed += 1
    assert changed > 50


def test_convert_of_a_lycoris_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "loha.safetensors"
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, str(path))
    assert main(["lora", "convert", str(path), "--to", "diffusers"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not supported" in err


def test_a_pickled_lora_converts_to_safetensors_and_then_inspects(lora_file: Path, tmp_path: Path, capsys) -> None:
    pt = tmp_path / "old.pt"
    torch.save(load_lora(lora_file)[0], pt)
    assert main(["lora", "inspect", str(pt)]) == 2
    assert "lora convert" in capsys.readouterr().err
    out = tmp_path / "old.safetensors"
    assert main(["lora", "convert", str(pt), "--to", "kohya", "--out", str(out)]) == 0
    assert "converted kohya → kohya" in capsys.readouterr().out
    assert main(["lora", "inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ranks"]["rank"] == 8

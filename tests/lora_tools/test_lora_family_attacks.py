"""LoRA files built to mislead the family check and the key-style check (found by the ATK3 attacker).

Metadata can be wrong (a merge or a hand edit keeps another file's `ss_base_model_version`), name
another family entirely (sd-scripts writes `ss_v2: False` for Flux and SD3 too), and a base model
checkpoint or a DoRA file is not a LoRA these tools convert. Each case is a hand-made file with the
real widths of its family (SDXL: CLIP-L 768, OpenCLIP-bigG 1280, cross-attention context 2048).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lora_tui.cli import main
from lora_tui.core.lora_arch import classify
from lora_tui.train.network.file import load_lora


def _module(name: str, d_in: int, d_out: int, rank: int = 4) -> dict[str, torch.Tensor]:
    return {f"{name}.lora_down.weight": torch.randn(rank, d_in), f"{name}.lora_up.weight": torch.randn(d_out, rank),
            f"{name}.alpha": torch.tensor(float(rank))}


def _sdxl_kohya() -> dict[str, torch.Tensor]:
    """Three modules of an SDXL LoRA as sd-scripts names them (two encoders, U-Net in the original layout)."""
    return {**_module("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
            **_module("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280),
            **_module("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640)}


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


def _inspect(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["lora", "inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err
    return err


WRONG_SD1 = {"ss_base_model_version": "sd_v1", "ss_v2": "False", "modelspec.architecture": "stable-diffusion-v1/lora"}


def test_an_sdxl_file_whose_metadata_says_sd1_is_reported_as_sdxl_with_the_contradiction(tmp_path: Path,
                                                                                          capsys) -> None:
    path = _save(tmp_path / "xl.safetensors", _sdxl_kohya(), WRONG_SD1)
    report = _inspect(path, capsys)
    assert report["architecture"] == "SDXL"
    assert "metadata says SD1" in report["architecture_reason"] and "lora_te1_" in report["architecture_reason"]


def test_an_sdxl_file_whose_metadata_says_sd1_round_trips_through_diffusers(tmp_path: Path, capsys) -> None:
    src = _save(tmp_path / "xl.safetensors", _sdxl_kohya(), WRONG_SD1)
    mid, back = tmp_path / "xl-d.safetensors", tmp_path / "xl-back.safetensors"
    assert main(["lora", "convert", str(src), "--to", "diffusers", "--out", str(mid)]) == 0
    assert any(k.startswith("text_encoder_2.") for k in load_lora(mid)[0])
    assert main(["lora", "convert", str(mid), "--to", "kohya", "--out", str(back)]) == 0
    original, again = load_lora(src)[0], load_lora(back)[0]
    assert set(again) == set(original)
    assert all(torch.equal(again[k], original[k]) for k in original)


def test_metadata_agreeing_with_the_tensors_still_answers_alone() -> None:
    shapes = {k: tuple(v.shape) for k, v in _sdxl_kohya().items()}
    verdict = classify(shapes, {"ss_base_model_version": "sdxl_base_v1-0"})
    assert verdict.family == "SDXL" and verdict.reason() == "metadata says SDXL"


def test_metadata_naming_sd1_or_sd2_narrows_to_sd2_when_the_text_encoder_is_1024_wide() -> None:
    shapes = {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 1024)}
    verdict = classify(shapes, {"lora_tui.family": "sd"})
    assert verdict.family == "SD2"


def test_tensors_that_contradict_themselves_leave_the_metadata_answer() -> None:
    # SD1's 768-wide context in SDXL's original-layout names: the names cannot be trusted, the metadata is
    shapes = {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)}
    assert classify(shapes, {"ss_base_model_version": "sd_v1"}).family == "SD1"


FLUX = {"ss_base_model_version": "flux1", "ss_v2": "False", "modelspec.architecture": "flux-1-dev/lora"}


SD3 = {"ss_v2": "False", "modelspec.architecture": "stable-diffusion-3-medium/lora"}


@pytest.mark.parametrize("metadata", [FLUX, SD3, {"ss_v2": "False", "ss_base_model_version": "lumina2"}],
                         ids=["flux", "sd3", "lumina"])
def test_metadata_of_another_model_family_is_never_read_as_sd1(metadata: dict[str, str]) -> None:
    shapes = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072)}
    verdict = classify(shapes, metadata)
    assert verdict.family == "other" and verdict.is_sdxl is None
    assert "not an SD1, SD2 or SDXL LoRA" in verdict.reason()


def test_a_bare_flux_lora_with_a_clip_l_encoder_is_not_called_sdxl() -> None:
    # sd-scripts' Flux networks name CLIP-L lora_te1_ (as SDXL does) and T5 lora_te3_
    shapes = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768),
              "lora_unet_single_blocks_0_linear1.lora_down.weight": (4, 3072),
              "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": (4, 4096)}
    verdict = classify(shapes)
    assert verdict.family == "other" and verdict.is_sdxl is None


@pytest.mark.parametrize("key", ["unet.double_blocks.0.img_attn.qkv.lora_A.weight",
                                 "base_model.model.single_blocks.0.linear1.lora_A.weight",
                                 "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"],
                         ids=["diffusers", "peft", "diffusers-transformer"])
def test_a_bare_flux_lora_in_other_layouts_is_not_an_sd_lora(key: str) -> None:
    assert classify({key: (4, 3072)}).family == "other"


def test_inspect_says_a_flux_lora_is_not_for_sd(tmp_path: Path, capsys) -> None:
    path = _save(tmp_path / "flux.safetensors", _module("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216), FLUX)
    report = _inspect(path, capsys)
    assert report["architecture"] == "other" and "flux1" in report["architecture_reason"]


def test_converting_a_flux_lora_back_to_kohya_says_it_is_not_an_sd_lora(tmp_path: Path, capsys) -> None:
    tensors = {f"unet.double_blocks.0.img_attn.qkv.lora_{ab}.weight": torch.zeros(s)
               for ab, s in (("A", (4, 3072)), ("B", (9216, 4)))}
    path = _save(tmp_path / "flux-d.safetensors", tensors, FLUX)
    assert main(["lora", "convert", str(path), "--to", "kohya", "--out", str(tmp_path / "k.safetensors")]) == 2
    err = _one_line_error(capsys)
    assert str(path) in err and "not an SD1, SD2 or SDXL LoRA" in err


UNET_WEIGHT = "model.diffusion_model.input_blocks.0.0.weight"


def test_inspect_of_a_full_checkpoint_says_it_is_not_a_lora(tmp_path: Path, capsys) -> None:
    # `model.diffusion_model.` holds ".diff", a LyCORIS suffix: the check must look at suffixes only
    path = _save(tmp_path / "sd15.safetensors", {UNET_WEIGHT: torch.zeros(8, 4, 3, 3),
                                                  "first_stage_model.decoder.conv_out.bias": torch.zeros(3)})
    assert main(["lora", "inspect", str(path)]) == 2
    err = _one_line_error(capsys)
    assert "no LoRA tensors" in err and "base model checkpoint" in err


def test_convert_of_a_full_checkpoint_is_not_called_lycoris(tmp_path: Path, capsys) -> None:
    path = _save(tmp_path / "sd15.safetensors", {UNET_WEIGHT: torch.zeros(8, 4, 3, 3)})
    assert main(["lora", "convert", str(path), "--to", "diffusers"]) == 2
    err = _one_line_error(capsys)
    assert "lycoris" not in err and str(path) in err


def test_convert_of_a_dora_file_says_dora_is_not_supported(tmp_path: Path, capsys) -> None:
    tensors = _sdxl_kohya()
    tensors["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.dora_scale"] = torch.ones(1, 768)
    path = _save(tmp_path / "dora.safetensors", tensors)
    assert main(["lora", "convert", str(path), "--to", "diffusers"]) == 2
    err = _one_line_error(capsys)
    assert "DoRA" in err and str(path) in err and "incomplete" not in err


def test_convert_of_a_file_with_alphas_only_names_the_file(tmp_path: Path, capsys) -> None:
    alpha = {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}
    path = _save(tmp_path / "alphas.safetensors", alpha)
    assert main(["lora", "convert", str(path), "--to", "diffusers"]) == 2
    err = _one_line_error(capsys)
    assert str(path) in err and "lora_down/lora_up" in err


def test_a_mismatch_message_does_not_quote_metadata_the_tensors_contradict() -> None:
    from lora_tui.train.network.sdxl_names import family_words

    assert family_words("sdxl", WRONG_SD1) == "SDXL"
    assert family_words("sd", {"ss_base_model_version": "sd_v1"}) == "SD1.x/SD2.x (sd_v1)"
    assert family_words("sdxl", {"ss_base_model_version": "sdxl_base_v1-0"}) == "SDXL (sdxl_base_v1-0)"


def test_merging_an_sd1_lora_with_a_flux_lora_is_refused(tmp_path: Path, capsys) -> None:
    sd1 = _save(tmp_path / "sd1.safetensors", _module("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
                {"ss_base_model_version": "sd_v1"})
    flux = _save(tmp_path / "flux.safetensors", _module("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216), FLUX)
    assert main(["lora", "merge", str(sd1), str(flux), "--dim", "2", "--out", str(tmp_path / "m.safetensors")]) == 2
    err = _one_line_error(capsys)
    assert "flux.safetensors" in err and "not an SD1, SD2 or SDXL LoRA" in err


@pytest.mark.parametrize("action", [["resize", "--dim", "1"], ["merge", "--dim", "1"]])
def test_resize_and_merge_of_a_dora_file_say_dora(action: list[str], tmp_path: Path, capsys) -> None:
    tensors = _sdxl_kohya()
    tensors["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.dora_scale"] = torch.ones(1, 768)
    path = _save(tmp_path / "dora.safetensors", tensors)
    assert main(["lora", action[0], str(path), *action[1:], "--out", str(tmp_path / "o.safetensors")]) == 2
    err = _one_line_error(capsys)
    assert "DoRA" in err and "LyCORIS" not in err and str(path) in err


def test_inspect_of_a_peft_folder_says_to_convert_it(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "adapter"
    (folder / "unet").mkdir(parents=True)
    assert main(["lora", "inspect", str(folder)]) == 2
    err = _one_line_error(capsys)
    assert "not found" not in err and "lora convert" in err


def test_a_ckpt_that_is_not_a_pickle_is_not_told_to_retry_without_weights_only(tmp_path: Path, capsys) -> None:
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"garbage, not a checkpoint")
    assert main(["lora", "convert", str(path), "--to", "kohya", "--out", str(tmp_path / "k.safetensors")]) == 2
    err = _one_line_error(capsys)
    assert "weights_only` set to `False`" not in err and "not a PyTorch checkpoint" in err and str(path) in err


def test_an_unknown_base_model_name_in_the_metadata_is_left_to_the_tensors() -> None:
    shapes = {k: tuple(v.shape) for k, v in _sdxl_kohya().items()}
    assert classify(shapes, {"ss_base_model_version": "my-merge-v3"}).family == "SDXL"
    assert classify(shapes, {"ss_base_model_version": "sd15", "ss_v2": "False"}).family == "SDXL"

"""SDXL base models: `make-tiny-model --sdxl`, family detection from headers, offline loading, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.core import model_family
from lora_tui.core.errors import ModelError
from lora_tui.train.model import ldm_convert as lc
from lora_tui.train.model.sdxl_load import SDXL_CONFIG_DIR, find_sdxl_tokenizer, load_sdxl_model

pytestmark = pytest.mark.usefixtures("no_network")  # loading must be offline


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tiny SDXL model (seed 0) made through the CLI as a Diffusers folder and as one file."""
    root = tmp_path_factory.mktemp("tiny-sdxl")
    assert main(["make-tiny-model", str(root / "folder"), "--sdxl"]) == 0
    assert main(["make-tiny-model", str(root / "single" / "xl.safetensors"), "--sdxl", "--single-file"]) == 0
    return root / "folder", root / "single" / "xl.safetensors"


def test_make_tiny_model_sdxl_writes_both_forms_with_two_tokenizers(tiny_sdxl: tuple[Path, Path]) -> None:
    folder, single = tiny_sdxl
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert (folder / part).is_dir(), part
    assert single.is_file()
    assert (single.parent / "xl.tokenizer" / "vocab.json").is_file()
    assert (single.parent / "xl.tokenizer_2" / "vocab.json").is_file()


def test_family_is_read_from_headers_without_torch_weights(tiny_sdxl: tuple[Path, Path], tiny_model_dir: Path,
                                                          tiny_single_file: Path) -> None:
    folder, single = tiny_sdxl
    assert model_family.detect_family(folder) == model_family.SDXL
    assert model_family.detect_family(single) == model_family.SDXL
    assert model_family.detect_family(tiny_model_dir) == model_family.SD1
    assert model_family.detect_family(tiny_single_file) == model_family.SD1


def test_sd2_v_is_told_by_the_scheduler_or_the_modelspec(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from lora_tui.train.model.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path / "v", v2=True, v_parameterization=True)
    assert model_family.detect_family(folder) == model_family.SD2_V
    tensors = {"cond_stage_model.model.ln_final.weight": torch.zeros(2)}
    save_file(tensors, str(tmp_path / "base.safetensors"))
    save_file(tensors, str(tmp_path / "v.safetensors"), metadata={"modelspec.prediction_type": "v"})
    assert model_family.detect_family(tmp_path / "base.safetensors") == model_family.SD2
    assert model_family.detect_family(tmp_path / "v.safetensors") == model_family.SD2_V


def test_a_broken_header_is_a_family_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(model_family.FamilyError, match="not plausible"):
        model_family.detect_family(bad)
    assert model_family.family_or_none(bad) is None


def test_single_file_loads_through_diffusers_equal_to_the_folder(tiny_sdxl: tuple[Path, Path]) -> None:
    folder, single = tiny_sdxl
    a, b = load_sdxl_model(folder), load_sdxl_model(single)
    assert (a.kind, b.kind) == ("diffusers", "safetensors")
    pairs = [(a.unet, b.unet), (a.vae, b.vae), (a.text_encoders[0], b.text_encoders[0]),
             (a.text_encoders[1], b.text_encoders[1])]
    for x, y in pairs:
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys()
        assert all(torch.equal(sx[k], sy[k]) for k in sx)
    assert b.tokenizers[1].pad_token_id == 0  # sd-scripts pads the second tokenizer like OpenCLIP
    assert b.base_model_version == "sdxl_base_v1-0"


def test_a_missing_second_tokenizer_is_one_line_naming_it(tmp_path: Path, tiny_sdxl: tuple[Path, Path]) -> None:
    _, single = tiny_sdxl
    copy = tmp_path / "xl.safetensors"
    shutil.copy(single, copy)
    shutil.copytree(single.parent / "xl.tokenizer", tmp_path / "xl.tokenizer")
    with pytest.raises(ModelError) as info:
        load_sdxl_model(copy)
    text = str(info.value)
    assert "tokenizer_2" in text and "\n" not in text and "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k" in text


def test_tokenizers_are_found_in_sd_scripts_tokenizer_cache_dir(tmp_path: Path, tiny_sdxl: tuple[Path, Path]) -> None:
    _, single = tiny_sdxl
    copy = tmp_path / "model" / "xl.safetensors"
    copy.parent.mkdir()
    shutil.copy(single, copy)
    cache = tmp_path / "cache"
    shutil.copytree(single.parent / "xl.tokenizer", cache / "openai_clip-vit-large-patch14")
    shutil.copytree(single.parent / "xl.tokenizer_2", cache / "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k")
    assert find_sdxl_tokenizer(copy, 1, cache) == cache / "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"
    assert load_sdxl_model(copy, tokenizer_cache_dir=cache).kind == "safetensors"


def test_shipped_sdxl_configs_are_sdxl_1_0_base_and_map_to_its_checkpoint_layout() -> None:
    """Parameter counts of SDXL 1.0 base (meta device), and every U-Net key has an original-layout name."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(name: str) -> dict:
        return json.loads((SDXL_CONFIG_DIR / name / "config.json").read_text())

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config("unet"))
        vae = AutoencoderKL.from_config(config("vae"))
        te1 = CLIPTextModel(CLIPTextConfig(**config("text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2")))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, te1, te2)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    unet_map = lc.unet_key_map(unet.config, unet.state_dict())
    assert len({s.key for s in unet_map.values()}) == 1680  # SDXL base's model.diffusion_model tensors
    assert unet_map["add_embedding.linear_1.weight"].key == "model.diffusion_model.label_emb.0.0.weight"
    te2_map = lc.sdxl_text_encoder_key_map(te2.state_dict(), second=True)
    assert te2_map["text_projection.weight"].key == "conditioner.embedders.1.model.text_projection"
    assert (SDXL_CONFIG_DIR / "tokenizer_2" / "tokenizer_config.json").is_file()


def test_the_sd_loader_refuses_sdxl_with_the_sd_scripts_line(tiny_sdxl: tuple[Path, Path]) -> None:
    from lora_tui.train.model.load import load_base_model

    for path in tiny_sdxl:
        with pytest.raises(ModelError, match='SDXL needs the sd-scripts backend for now: set backend = "sd-scripts"'):
            load_base_model(path)


def test_make_tiny_model_sdxl_refuses_v2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny-model", str(tmp_path / "m"), "--sdxl", "--v2"]) != 0
    err = capsys.readouterr().err
    assert "--sdxl" in err and err.count("\n") == 1


def test_the_built_in_trainer_refuses_sdxl_only_options_on_an_sd1_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SDXL-only options parse now (the trainer trains SDXL); on an SD1 model they are refused when it loads
    (tests/train/test_sdxl_te_cache.py); SDXL training itself: tests/train/test_sdxl_trainer.py."""
    from lora_tui.train.loop.args import parse_args

    args = parse_args(["--cache_text_encoder_outputs", "--dataset_config", "d.toml",
                       "--pretrained_model_name_or_path", str(tiny_model_dir)])
    assert args.cache_text_encoder_outputs is True


def test_doctor_shows_sdxl_and_the_family_mismatch(tmp_path: Path, tiny_sdxl: tuple[Path, Path]) -> None:
    from lora_tui.core import project as project_mod
    from lora_tui.train.diagnostics import project as dp
    from tests.helpers import write_images, write_project

    write_images(tmp_path / "data" / "a", [(64, 64)] * 2)
    write_project(tmp_path, [{"resolution": 1024, "subsets": [{"image_dir": "data/a"}]}],
                  model={"pretrained_model_name_or_path": str(tiny_sdxl[1]), "v2": True})
    findings, family = dp.check_model(project_mod.load(tmp_path))
    assert family == "sdxl" and findings[0].severity == "ok" and "(SDXL)" in findings[0].message
    messages = [f.message for f in findings if f.severity == "error"]
    assert any("v2 = true" in m for m in messages) and not any("sd-scripts backend" in m for m in messages)
    tok = dp.check_tokenizer(project_mod.load(tmp_path), family, {})
    assert [f.severity for f in tok] == ["ok", "ok"] and tok[1].message.endswith("xl.tokenizer_2")


def test_sdxl_lora_size_table_matches_sd_scripts_module_counts() -> None:
    """264 text-encoder and 722 U-Net modules (sd-scripts' SDXL counts), recounted on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lora_tui.train.diagnostics.project import LORA_PARAMS_PER_RANK
    from lora_tui.train.network.lora import LoRANetwork

    def config(name: str) -> dict:
        return json.loads((SDXL_CONFIG_DIR / name / "config.json").read_text())

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config("unet"))
        te1 = CLIPTextModel(CLIPTextConfig(**config("text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2")))
        first, second = LoRANetwork(te1, unet, dim=1, alpha=1), LoRANetwork(te2, unet, dim=1, alpha=1)

    def tally(loras: list) -> tuple[int, int]:
        return sum(m.lora_down.weight.numel() + m.lora_up.weight.numel() for m in loras), len(loras)

    (p1, n1), (p2, n2) = tally(first.text_encoder_loras), tally(second.text_encoder_loras)
    table = LORA_PARAMS_PER_RANK["sdxl"]
    assert (p1 + p2, n1 + n2) == table["text_encoder"] and n1 + n2 == 264
    assert tally(first.unet_loras) == table["unet"] and table["unet"][1] == 722


def test_sdxl_text_conditioning_equals_diffusers_sdxl_pipeline(tiny_sdxl: tuple[Path, Path]) -> None:
    """Penultimate states of both encoders and bigG's pooled projection, as StableDiffusionXLPipeline has them."""
    from diffusers import StableDiffusionXLPipeline

    from lora_tui.train.model.sdxl_text import encode_sdxl

    folder, _ = tiny_sdxl
    model = load_sdxl_model(folder)
    pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                     text_encoder_2=model.text_encoders[1], tokenizer=model.tokenizers[0],
                                     tokenizer_2=model.tokenizers[1], unet=model.unet, scheduler=_scheduler())
    captions = ["a photo of sks dog", "mira woman, [arms up]"]
    with torch.no_grad():
        hidden, pooled = encode_sdxl(model.tokenizers, model.text_encoders, captions)
        ref_hidden, _, ref_pooled, _ = pipe.encode_prompt(captions, device="cpu", do_classifier_free_guidance=False)
    assert hidden.shape == (2, 77, 16 + 32) and pooled.shape == (2, 32)
    assert torch.allclose(hidden, ref_hidden) and torch.allclose(pooled, ref_pooled)


def test_sdxl_size_embedding_equals_the_unets_own(tiny_sdxl: tuple[Path, Path]) -> None:
    """sd-scripts embeds (original, crop, target) itself; diffusers' U-Net from time_ids: the same vector."""
    from lora_tui.train.model.sdxl_text import added_conditions, size_embedding, time_ids

    unet = load_sdxl_model(tiny_sdxl[0]).unet
    ids = time_ids([(1024, 1536), (832, 1216)], [(0, 160), (0, 0)], [(832, 1216), (832, 1216)])
    dim = unet.config.addition_time_embed_dim
    assert torch.allclose(size_embedding(ids, dim), unet.add_time_proj(ids.flatten()).reshape(2, -1), atol=1e-6)
    latents, pooled = torch.randn(2, 4, 8, 8), torch.randn(2, 32)
    with torch.no_grad():
        out = unet(latents, 10, torch.randn(2, 77, 48), added_cond_kwargs=added_conditions(pooled, ids)).sample
    assert out.shape == latents.shape


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

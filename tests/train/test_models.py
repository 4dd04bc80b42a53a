"""Base-model loading: Diffusers folders, single files (LDM layout), tokenizers, refusals, offline."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from lora_tui.core.errors import ModelError
from lora_tui.train.model import ldm_convert as lc
from lora_tui.train.model.load import CONFIGS_METADATA_KEY, BaseModel, load_base_model, read_checkpoint, shipped_configs
from lora_tui.train.model.tiny import make_tiny_model, tiny_configs, tokenizer_vocab

pytestmark = pytest.mark.usefixtures("no_network")  # loading must be offline


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny SD2-topology model (seed 3) as a Diffusers folder (v-prediction scheduler) and a single file."""
    root = tmp_path_factory.mktemp("tiny-v2")
    folder = make_tiny_model(root / "diffusers", v2=True, seed=3, v_parameterization=True)
    single = make_tiny_model(root / "single", v2=True, single_file=True, seed=3)
    return folder, single


def _outputs(model: BaseModel) -> list[torch.Tensor]:
    """Text-encoder, U-Net and VAE outputs on fixed inputs."""
    ids = model.tokenizer(["a photo of sks dog, outdoors"], padding="max_length", truncation=True,
                          max_length=model.tokenizer.model_max_length, return_tensors="pt").input_ids
    generator = torch.Generator().manual_seed(7)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    image = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        hidden = model.text_encoder(ids)[0]
        noise = model.unet(latents, torch.tensor([500]), hidden).sample
        mean = model.vae.encode(image).latent_dist.mean
        decoded = model.vae.decode(mean).sample
    return [ids, hidden, noise, mean, decoded]


def _assert_same_model(a: BaseModel, b: BaseModel) -> None:
    for name in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    for x, y in zip(_outputs(a), _outputs(b)):
        assert torch.equal(x, y)


# ------------------------------------------------------------------------------------------- happy paths
def test_diffusers_folder_loads(tiny_model_dir: Path) -> None:
    model = load_base_model(tiny_model_dir)
    assert (model.kind, model.v2, model.base_model_version, model.notes) == ("diffusers", False, "sd_v1", [])
    assert model.source == tiny_model_dir
    sched = model.noise_scheduler.config
    assert (sched.num_train_timesteps, sched.beta_start, sched.beta_end, sched.beta_schedule) == (
        1000, 0.00085, 0.012, "scaled_linear")
    assert sched.clip_sample is False and sched.prediction_type == "epsilon"
    ids, hidden, noise, mean, decoded = _outputs(model)
    assert int(ids.max()) < model.text_encoder.config.vocab_size and ids.shape == (1, 77)
    assert hidden.shape == (1, 77, 32) and noise.shape == (1, 4, 8, 8)
    assert mean.shape == (1, 4, 8, 8) and decoded.shape == (1, 3, 64, 64)  # the VAE downsamples by 8, like SD
    assert model.vae.config.scaling_factor == 0.18215


def test_single_safetensors_equals_diffusers_folder(tiny_model_dir: Path, tiny_single_file: Path) -> None:
    single = load_base_model(tiny_single_file)
    assert (single.kind, single.base_model_version) == ("safetensors", "sd_v1")
    state, configs = read_checkpoint(tiny_single_file)
    assert configs == tiny_configs(False)
    assert "model.diffusion_model.input_blocks.5.1.transformer_blocks.0.attn1.to_q.weight" in state
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 conv, like real SD files
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in state
    _assert_same_model(load_base_model(tiny_model_dir), single)


def test_v2_single_file_equals_diffusers_folder_and_v_prediction(tiny_v2: tuple[Path, Path]) -> None:
    folder, single = tiny_v2
    a = load_base_model(folder, v2=True, v_parameterization=True)
    b = load_base_model(single, v2=True, v_parameterization=True)
    for model in (a, b):
        assert model.noise_scheduler.config.prediction_type == "v_prediction"
        assert (model.v2, model.base_model_version, model.notes) == (True, "sd_v2_v", [])
    state, _ = read_checkpoint(single)
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in state
    _assert_same_model(a, b)


def test_v2_is_detected_from_the_weights(tiny_v2: tuple[Path, Path]) -> None:
    folder, single = tiny_v2
    for path in (folder, single):
        model = load_base_model(path)  # no --v2: the OpenCLIP text encoder says SD2
        assert model.v2 and model.base_model_version == "sd_v2"
        assert any("--v2 was not given" in note for note in model.notes)
    assert any("prediction_type=v_prediction" in note for note in load_base_model(folder).notes)


def test_explicit_v2_on_sd1_weights_is_an_error(tiny_model_dir: Path, tiny_single_file: Path) -> None:
    for path in (tiny_model_dir, tiny_single_file):
        with pytest.raises(ModelError, match=r"--v2 given but this is an SD1\.x"):
            load_base_model(path, v2=True)


def test_ckpt_with_weights_only_loads(tmp_path: Path, tiny_single_file: Path) -> None:
    ckpt = make_tiny_model(tmp_path / "tiny.ckpt", single_file=True, seed=0)
    assert (tmp_path / "tiny.tokenizer" / "vocab.json").is_file()
    model = load_base_model(ckpt)
    assert model.kind == "ckpt"
    _assert_same_model(model, load_base_model(tiny_single_file))


def test_dtype_is_applied(tiny_single_file: Path) -> None:
    model = load_base_model(tiny_single_file, dtype=torch.bfloat16)
    for module in (model.unet, model.vae, model.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}


# -------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_sources(tmp_path: Path, tiny_single_file: Path) -> None:
    model_file = tmp_path / "m.safetensors"
    shutil.copy(tiny_single_file, model_file)
    with pytest.raises(ModelError) as err:
        load_base_model(model_file)
    text = str(err.value)
    assert "no tokenizer found for m.safetensors" in text and f"{tmp_path / 'tokenizer'}/" in text
    assert "\n" not in text and "--tokenizer_path" in text

    elsewhere = tmp_path / "my-tokenizer"
    shutil.copytree(tiny_single_file.parent / "tokenizer", elsewhere)
    assert len(load_base_model(model_file, tokenizer_path=elsewhere).tokenizer) == len(tokenizer_vocab())

    cache = tmp_path / "cache"
    shutil.copytree(elsewhere, cache / "openai_clip-vit-large-patch14")  # sd-scripts' --tokenizer_cache_dir
    load_base_model(model_file, tokenizer_cache_dir=cache)

    shutil.copytree(elsewhere, tmp_path / "m.tokenizer")  # <stem>.tokenizer/ beside the file
    load_base_model(model_file)

    with pytest.raises(ModelError, match=r"no vocab\.json"):
        load_base_model(model_file, tokenizer_path=tmp_path / "nowhere")


def test_tokenizer_larger_than_text_encoder_is_refused(tmp_path: Path, tiny_single_file: Path) -> None:
    big = tmp_path / "big"
    shutil.copytree(tiny_single_file.parent / "tokenizer", big)
    vocab = tokenizer_vocab()
    vocab["extra</w>"] = len(vocab)
    (big / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ModelError, match="text encoder only"):
        load_base_model(tiny_single_file, tokenizer_path=big)


# -------------------------------------------------------------------------------------------- refusals
class _Payload:
    """Pickles to a call of os.system: what a malicious .ckpt does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_ckpt_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"x": torch.zeros(1)}, "boom": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ModelError, match="contains code") as err:
        load_base_model(ckpt)
    assert ".safetensors" in str(err.value)
    assert not marker.exists()
    if writer == "pickle":  # control: the payload is live, plain unpickling runs it
        pickle.loads(ckpt.read_bytes())
        assert marker.exists()


def test_missing_and_unusable_paths(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError, match="model not found"):
        load_base_model(tmp_path / "nope.safetensors")
    with pytest.raises(ModelError, match="model not found"):
        load_base_model("someone/not-cached-model")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported model file type"):
        load_base_model(tmp_path / "model.bin")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00not a header")
    with pytest.raises(ModelError, match="cannot read safetensors"):
        load_base_model(tmp_path / "broken.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="file missing") as err:
        load_base_model(tmp_path / "empty")
    assert "model_index.json" in str(err.value)
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    for weights in (partial / "unet").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelError, match="cannot load unet"):
        load_base_model(partial)


def test_foreign_or_incomplete_single_files(tmp_path: Path, tiny_single_file: Path) -> None:
    from safetensors.torch import save_file

    state, _ = read_checkpoint(tiny_single_file)
    save_file(state, str(tmp_path / "noconfig.safetensors"))  # tiny weights, no configs: SD1.5 shapes expected
    shutil.copytree(tiny_single_file.parent / "tokenizer", tmp_path / "tokenizer")
    with pytest.raises(ModelError, match=r"has shape .* expected"):
        load_base_model(tmp_path / "noconfig.safetensors")
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(ModelError, match="no Stable Diffusion text encoder"):
        load_base_model(tmp_path / "lora.safetensors")
    save_file({"conditioner.embedders.0.transformer.x": torch.zeros(1)}, str(tmp_path / "xl.safetensors"))
    with pytest.raises(ModelError, match="SDXL"):
        load_base_model(tmp_path / "xl.safetensors")
    cut = {k: v for k, v in state.items() if ".out.2." not in k}
    torch.save({"state_dict": cut, CONFIGS_METADATA_KEY: json.dumps(tiny_configs())}, tmp_path / "cut.ckpt")
    with pytest.raises(ModelError, match=r"unet weight model\.diffusion_model\.out\.2\.\w+ missing"):
        load_base_model(tmp_path / "cut.ckpt")


def test_hf_hub_offline_is_the_default() -> None:
    assert "HF_HUB_OFFLINE" in os.environ  # set (unless the user chose a value) by importing models


def test_old_text_encoder_keys_are_normalized() -> None:
    old = {"cond_stage_model.transformer.embeddings.token_embedding.weight": torch.zeros(1),
           "cond_stage_model.transformer.final_layer_norm.weight": torch.zeros(1), "model.x": torch.zeros(1)}
    assert set(lc.normalize_text_encoder_keys(old)) == {
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight", "model.x"}


# ----------------------------------------------------------------------- the mapping on real SD configs
REAL_V1 = {  # key -> shape in the real v1-5 checkpoint
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
    "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 768),
    "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
    "model.diffusion_model.input_blocks.9.0.op.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.input_blocks.11.0.out_layers.3.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight": (10240, 1280),
    "model.diffusion_model.middle_block.2.emb_layers.1.weight": (1280, 1280),
    "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
    "model.diffusion_model.output_blocks.11.1.proj_out.weight": (320, 320, 1, 1),
    "model.diffusion_model.time_embed.0.weight": (1280, 320),
    "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
    "first_stage_model.encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
    "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
    "first_stage_model.encoder.down.2.downsample.conv.weight": (512, 512, 3, 3),
    "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "first_stage_model.decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
    "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
    "first_stage_model.decoder.norm_out.weight": (128,),
    "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
    "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 768),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
}
REAL_V2 = {
    "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024),
    "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_bias": (3072,),
    "cond_stage_model.model.transformer.resblocks.22.mlp.c_fc.weight": (4096, 1024),
    "cond_stage_model.model.positional_embedding": (77, 1024),
    "cond_stage_model.model.token_embedding.weight": (49408, 1024),
    "cond_stage_model.model.ln_final.weight": (1024,),
}


def _real_shapes(v2: bool) -> dict[str, tuple[int, ...]]:
    if not v2:
        return REAL_V1
    shapes = {k: v for k, v in REAL_V1.items() if not k.startswith("cond_stage_model.")}
    for key in ("model.diffusion_model.input_blocks.1.1.proj_in.weight",
                "model.diffusion_model.output_blocks.11.1.proj_out.weight"):
        shapes[key] = shapes[key][:2]  # SD2's transformers use linear projections
    shapes["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] = (640, 1024)
    return {**shapes, **REAL_V2}


@pytest.mark.parametrize("v2", [False, True])
def test_key_mapping_on_real_sd_configs(v2: bool) -> None:
    """Every Diffusers key of the real SD1.5/SD2.1 architectures maps to one real checkpoint key and back."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = shipped_configs(v2)
    with init_empty_weights():
        modules = {"unet": UNet2DConditionModel.from_config(configs["unet"]),
                   "vae": AutoencoderKL.from_config(configs["vae"]),
                   "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))}
    counts = {"unet": 686, "vae": 248, "text_encoder": 280 if v2 else 196}  # real checkpoint key counts
    ldm: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        diffusers_sd = module.state_dict()
        if name == "unet":
            key_map = lc.unet_key_map(configs["unet"], diffusers_sd)
        elif name == "vae":
            key_map = lc.vae_key_map(configs["vae"], diffusers_sd)
        else:
            key_map = lc.text_encoder_key_map(diffusers_sd, v2=v2)
        assert set(key_map) == {k for k in diffusers_sd if not k.endswith("position_ids")}
        sources = [(s.key, s.part) for s in key_map.values()]
        assert len(set(sources)) == len(sources), f"{name}: two Diffusers keys share one checkpoint slot"
        converted = lc.to_ldm(diffusers_sd, key_map)
        assert len(converted) == counts[name], name
        for key, source in key_map.items():  # and back, with the original shapes
            back = lc.pull(converted, source)
            assert back is not None and back.shape == diffusers_sd[key].shape, key
        ldm.update(converted)
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in ldm)
    for key, shape in _real_shapes(v2).items():
        assert key in ldm, key
        assert tuple(ldm[key].shape) == shape, key
    assert lc.detect_family(ldm) == ("sd_v2" if v2 else "sd_v1")


def test_tokenizer_from_the_local_hf_cache(tmp_path: Path, tiny_single_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """SD1 files fall back to openai/clip-vit-large-patch14 in the HF cache (HF_HOME read at call time)."""
    model_file = tmp_path / "alone" / "m.safetensors"
    model_file.parent.mkdir()
    shutil.copy(tiny_single_file, model_file)
    hub = tmp_path / "hf" / "hub" / "models--openai--clip-vit-large-patch14"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text("0123abcd")
    shutil.copytree(tiny_single_file.parent / "tokenizer", hub / "snapshots" / "0123abcd")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert len(load_base_model(model_file).tokenizer) == len(tokenizer_vocab())


def test_tiny_folder_is_a_diffusers_pipeline(tiny_model_dir: Path) -> None:
    """Other tools (and sampling) can open the tiny folder as a StableDiffusionPipeline, offline."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir), local_files_only=True, safety_checker=None)
    image = pipe("a dog", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
    assert image.shape == (64, 64, 3)


def test_tiny_model_is_small(tiny_model_dir: Path, tiny_single_file: Path) -> None:
    for root in (tiny_model_dir, tiny_single_file.parent):
        assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 6_000_000
    assert {p.name for p in tiny_model_dir.iterdir()} == {
        "model_index.json", "scheduler", "unet", "vae", "text_encoder", "tokenizer"}


@pytest.mark.parametrize("v2", [False, True])
def test_diffusers_own_converter_reads_our_single_file(v2: bool, request: pytest.FixtureRequest) -> None:
    """An independent check of the layout: diffusers' from_single_file gets the same weights from our file."""
    from diffusers import StableDiffusionPipeline

    if v2:
        folder, single = request.getfixturevalue("tiny_v2")
    else:
        folder, single = request.getfixturevalue("tiny_model_dir"), request.getfixturevalue("tiny_single_file")
    theirs = StableDiffusionPipeline.from_single_file(str(single), config=str(folder), local_files_only=True,
                                                      safety_checker=None)
    ours = load_base_model(folder, v2=v2)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(theirs, name).state_dict(), getattr(ours, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

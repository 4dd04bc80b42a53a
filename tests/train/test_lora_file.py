"""LoRA files: atomic safetensors with sd-scripts' hashes and metadata, safe .ckpt, diffusers compat."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from lora_tui import __version__
from lora_tui.core.errors import TrainError
from lora_tui.train.network.file import build_metadata, load_lora, save_lora
from lora_tui.train.network.lora import LoRANetwork
from tests.helpers_clip import write_tiny_clip_tokenizer


def big_state_dict() -> dict[str, torch.Tensor]:
    """> 1 MiB of tensor data so the legacy hash (64 KiB at 1 MiB) covers real bytes."""
    g = torch.Generator().manual_seed(0)
    return {"lora_unet_a.lora_down.weight": torch.randn(4, 70_000, generator=g),
            "lora_unet_a.lora_up.weight": torch.randn(70_000, 4, generator=g),
            "lora_unet_a.alpha": torch.tensor(1.0)}


def test_safetensors_round_trip_with_independent_hashes(tmp_path: Path) -> None:
    sd = big_state_dict()
    meta = {"ss_network_dim": "4", "ss_output_name": "judy", "modelspec.title": "judy"}
    path = tmp_path / "out" / "judy.safetensors"
    written = save_lora(path, sd, meta)
    loaded, got_meta = load_lora(path)
    assert got_meta == written and all(isinstance(v, str) for v in got_meta.values())
    assert got_meta["ss_output_name"] == "judy" and got_meta["modelspec.title"] == "judy"
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())

    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8:8 + n])["__metadata__"] == written
    assert written["sshs_model_hash"] == hashlib.sha256(raw[8 + n:]).hexdigest()
    # the legacy hash is over the file made with only ss_* metadata, as sd-scripts computes it
    ref = tmp_path / "ref.safetensors"
    safetensors.torch.save_file(sd, str(ref), {"ss_network_dim": "4", "ss_output_name": "judy"})
    legacy = hashlib.sha256(ref.read_bytes()[0x100000:0x110000]).hexdigest()[:8]
    assert written["sshs_legacy_hash"] == legacy != hashlib.sha256(b"").hexdigest()[:8]
    # editing non-ss metadata keeps both hashes
    again = save_lora(tmp_path / "b.safetensors", sd, {**meta, "modelspec.title": "other"})
    assert again["sshs_model_hash"] == written["sshs_model_hash"]
    assert again["sshs_legacy_hash"] == written["sshs_legacy_hash"]


def test_save_casts_replaces_atomically_and_checks_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"old")
    sd = {"a.lora_down.weight": torch.ones(2, 3).t(), "a.alpha": torch.tensor(2.0)}  # non-contiguous
    save_lora(path, sd, {}, dtype=torch.float16)
    loaded, meta = load_lora(path)
    assert loaded["a.lora_down.weight"].dtype == torch.float16 and set(meta) == {"sshs_model_hash",
                                                                                  "sshs_legacy_hash"}
    assert os.listdir(tmp_path) == ["x.safetensors"]  # no temp file left behind
    with pytest.raises(TypeError, match="ss_network_dim"):
        save_lora(tmp_path / "y.safetensors", sd, {"ss_network_dim": 4})  # type: ignore[dict-item]
    assert not (tmp_path / "y.safetensors").exists()
    with pytest.raises(TrainError, match="unknown LoRA file type"):
        save_lora(tmp_path / "y.bin", sd, {})


def test_ckpt_round_trip_and_errors(tmp_path: Path) -> None:
    sd = {"a.lora_down.weight": torch.randn(2, 3), "a.alpha": torch.tensor(1.0)}
    assert save_lora(tmp_path / "x.ckpt", sd, {"ss_a": "b"}) == {}
    loaded, meta = load_lora(tmp_path / "x.ckpt")
    assert meta == {} and torch.equal(loaded["a.lora_down.weight"], sd["a.lora_down.weight"])
    with pytest.raises(TrainError, match="not found"):
        load_lora(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(TrainError, match="not a readable"):
        load_lora(tmp_path / "bad.safetensors")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(TrainError, match="not a LoRA state dict"):
        load_lora(tmp_path / "list.pt")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_malicious_ckpt_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"a.lora_down.weight": _Evil(marker)}, f, protocol=2)
    with pytest.raises(TrainError, match="refused") as err:
        load_lora(path)
    assert not marker.exists() and "\n" not in str(err.value)


def test_build_metadata_strings_json_and_modelspec() -> None:
    facts = {"session_id": 123, "training_started_at": 1700000000.5, "training_finished_at": 1700000100.0,
             "output_name": "judy", "steps": 100, "epoch": 2, "seed": 42, "learning_rate": 1e-4,
             "text_encoder_lr": None, "unet_lr": 1e-4, "lr_scheduler": "cosine", "lr_warmup_steps": 0,
             "optimizer": "torch.optim.adamw.AdamW(weight_decay=0.01)", "network_dim": 8, "network_alpha": 4.0,
             "clip_skip": 2, "cache_latents": True, "datasets": [{"is_dreambooth": True, "subsets": []}],
             "tag_frequency": {"dog": {"sks": 3}}, "dataset_dirs": {"dog": {"n_repeats": 10, "img_count": 3}}}
    meta = build_metadata(facts)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert meta["ss_session_id"] == "123" and meta["ss_learning_rate"] == "0.0001"
    assert meta["ss_text_encoder_lr"] == "None" and meta["ss_noise_offset"] == "None"
    assert meta["ss_cache_latents"] == "True" and meta["ss_network_alpha"] == "4.0"
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_v2"] == "False"
    assert meta["ss_base_model_version"] == "sd_v1" and "ss_network_args" not in meta
    assert json.loads(meta["ss_tag_frequency"]) == {"dog": {"sks": 3}}
    assert json.loads(meta["ss_datasets"])[0]["is_dreambooth"] is True
    assert meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["modelspec.implementation"] == "diffusers" and meta["modelspec.title"] == "judy"
    assert meta["modelspec.resolution"] == "512x512" and meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.encoder_layer"] == "2"
    assert meta["modelspec.implementation_version"] == f"lora-tui/{__version__}"
    assert meta["modelspec.date"].startswith("2023-11-1")

    v2v = build_metadata({"v2": True, "v_parameterization": True, "network_args": ["conv_dim=4"],
                          "resolution": (768, 640), "title": "t"}, modelspec={"trigger_phrase": "sks"})
    assert v2v["ss_base_model_version"] == "sd_v2_v" and v2v["ss_v2"] == "True"
    assert v2v["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
    assert v2v["modelspec.prediction_type"] == "v" and v2v["modelspec.resolution"] == "768x640"
    assert json.loads(v2v["ss_network_args"]) == ["conv_dim=4"] and v2v["modelspec.trigger_phrase"] == "sks"
    assert "modelspec.encoder_layer" not in v2v
    assert build_metadata({"v2": True})["modelspec.architecture"] == "stable-diffusion-v2-512/lora"
    minimal = build_metadata({"ss_network_dim": 4, "session_id": 1}, minimal=True)
    assert {k for k in minimal if k.startswith("ss_")} == {
        "ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha"}
    with pytest.raises(ValueError, match="netwrok_dim"):
        build_metadata({"netwrok_dim": 4})


# --- the compatibility contract: diffusers' load_lora_weights reads our file -------------------


def tiny_pipeline(tmp_path: Path) -> StableDiffusionPipeline:
    tok_dir = write_tiny_clip_tokenizer(tmp_path / "tokenizer")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
    vocab = json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        vocab_size=len(vocab), max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])).eval()
    unet = UNet2DConditionModel(sample_size=16, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4).eval()
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=32).eval()
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(clip_sample=False, steps_offset=1, set_alpha_to_one=False),
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def render(pipe: StableDiffusionPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    out = pipe("sks dog smile", negative_prompt="the girl", num_inference_steps=2, guidance_scale=5.0,
               height=32, width=32, generator=torch.Generator().manual_seed(0), output_type="np")
    return np.asarray(out.images)


def merge_by_hand(pipe: StableDiffusionPipeline, sd: dict[str, torch.Tensor]) -> None:
    """base weight += up @ down · alpha/rank, written independently of the network code."""
    layers = {"lora_unet_" + n.replace(".", "_"): m for n, m in pipe.unet.named_modules()}
    te_path = "" if hasattr(pipe.text_encoder, "text_model") else "text_model_"
    layers |= {"lora_te_" + te_path + n.replace(".", "_"): m for n, m in pipe.text_encoder.named_modules()}
    names = {k.split(".")[0] for k in sd}
    with torch.no_grad():
        for name in names:
            down, up = sd[f"{name}.lora_down.weight"], sd[f"{name}.lora_up.weight"]
            scale = float(sd[f"{name}.alpha"]) / down.shape[0]
            if down.ndim == 2:
                delta = up @ down
            else:
                delta = torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
            layers[name].weight += delta * scale


class _Warnings(logging.Handler):
    """Collects warnings of libraries whose loggers do not propagate to the root (so caplog misses them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _Warnings:
        for name in ("diffusers", "transformers", "peft"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("diffusers", "transformers", "peft"):
            logging.getLogger(name).removeHandler(self)


def load_into(pipe: StableDiffusionPipeline, folder: Path, weight_name: str) -> list[str]:
    """pipe.load_lora_weights, returning the 'unexpected keys' warnings diffusers only logs."""
    with _Warnings() as caught:
        pipe.load_lora_weights(str(folder), weight_name=weight_name)
    return [m for m in caught.messages if "unexpected" in m.lower()]


def component_outputs(pipe: StableDiffusionPipeline) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-encoder hidden states and one UNet prediction: sharper than images (no clamping)."""
    g = torch.Generator().manual_seed(3)
    ids = pipe.tokenizer("sks dog smile", padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
        pred = pipe.unet(torch.randn(1, 4, 16, 16, generator=g), 500, encoder_hidden_states=hidden).sample
    return hidden, pred


@pytest.mark.parametrize("conv_dim", [None, 2], ids=["linear", "conv"])
def test_diffusers_load_lora_weights_matches_hand_merge(tmp_path: Path, conv_dim: int | None) -> None:
    base = tiny_pipeline(tmp_path)
    loaded, merged, control = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    net = LoRANetwork(base.text_encoder, base.unet, dim=4, alpha=2.0, conv_dim=conv_dim, conv_alpha=1.0)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    save_lora(tmp_path / "lora" / "judy.safetensors", net.state_dict(), build_metadata({"output_name": "judy"}))
    sd, _ = load_lora(tmp_path / "lora" / "judy.safetensors")

    assert load_into(loaded, tmp_path / "lora", "judy.safetensors") == []
    injected = {n for n, m in list(loaded.unet.named_modules()) + list(loaded.text_encoder.named_modules())
                if hasattr(m, "lora_A") and len(m.lora_A) > 0}
    assert len(injected) == len(net.loras)  # every module of the file became a peft LoRA layer

    merge_by_hand(merged, sd)
    for got_t, want_t, plain_t in zip(component_outputs(loaded), component_outputs(merged), component_outputs(base)):
        assert (want_t - plain_t).abs().max() > 1e-2
        torch.testing.assert_close(got_t, want_t, atol=1e-5, rtol=1e-5)
    want, got, plain = render(merged), render(loaded), render(base)
    assert np.abs(want - plain).max() > 1e-2  # the LoRA changes the picture: the check is not vacuous
    np.testing.assert_allclose(got, want, atol=1e-4)

    # control: the warning capture above does see a key diffusers cannot place
    bogus = {**sd, "lora_unet_mid_block_attentions_0_bogus.lora_down.weight": torch.zeros(4, 16),
             "lora_unet_mid_block_attentions_0_bogus.lora_up.weight": torch.zeros(16, 4)}
    save_lora(tmp_path / "bogus" / "b.safetensors", bogus, {})
    assert load_into(control, tmp_path / "bogus", "b.safetensors")

"""A LoRA without metadata whose names do not say its base model family is told by its tensor shapes.

Fixtures are our own LoRANetwork on the real SD1.5, SD2.1 and SDXL 1.0 U-Net configs shipped in the
package (meta device; rank-1 zero factors are written, the shapes are the real ones) and on the tiny
SDXL model, converted with `lora convert --to diffusers` (and `--to peft`) and stripped of metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.core.lora_arch import classify
from lora_tui.train.model.sdxl_load import SDXL_CONFIG_DIR
from lora_tui.train.network.file import load_lora
from lora_tui.train.network.lora import LoRANetwork
from lora_tui.train.network.sdxl_names import lora_family

CONFIGS = SDXL_CONFIG_DIR.parent
UNET_CONFIGS = {"SD1": CONFIGS / "sd_v1" / "unet.json", "SD2": CONFIGS / "sd_v2" / "unet.json",
                "SDXL": SDXL_CONFIG_DIR / "unet" / "config.json"}


def _meta_unet_lora(family: str) -> dict[str, torch.Tensor]:
    """A U-Net-only rank-1 LoRA (zeros, real shapes, fp16) of our network on the real config of `family`."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads(UNET_CONFIGS[family].read_text()))
    net = LoRANetwork(None, unet, dim=1, alpha=1.0)
    return {k: torch.zeros(v.shape, dtype=torch.float16) if v.ndim else torch.tensor(1.0)
            for k, v in net.state_dict().items()}


def _save_bare(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Tensors only (save_lora would add sd-scripts' hashes): how other trainers' files look."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _inspect(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["lora", "inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _bare_diffusers(kohya: Path, tmp_path: Path, *, old_names: bool = False) -> Path:
    """`lora convert --to diffusers`, then every header entry but the tensors dropped (other trainers' files)."""
    mid = tmp_path / f"{kohya.stem}-d.safetensors"
    assert main(["lora", "convert", str(kohya), "--to", "diffusers", "--out", str(mid), "--force"]) == 0
    tensors = load_lora(mid)[0]
    if old_names:  # diffusers' older attention-processor style: …to_k.lora.down.weight
        tensors = {k.replace(".lora_A.weight", ".lora.down.weight").replace(".lora_B.weight", ".lora.up.weight"): v
                   for k, v in tensors.items()}
    bare = tmp_path / f"{kohya.stem}-bare{'-old' if old_names else ''}.safetensors"
    return _save_bare(bare, tensors)


@pytest.fixture(scope="module")
def real_kohya(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("real-shapes")
    out = {}
    for family in UNET_CONFIGS:
        out[family] = folder / f"{family.lower()}.safetensors"
        _save_bare(out[family], _meta_unet_lora(family))
    return out


@pytest.mark.parametrize("family", ["SD1", "SD2", "SDXL"])
@pytest.mark.parametrize("old_names", [False, True], ids=["lora_A", "lora.down"])
def test_a_bare_unet_only_diffusers_lora_is_told_by_its_shapes(real_kohya, family: str, old_names: bool,
                                                               tmp_path: Path, capsys) -> None:
    bare = _bare_diffusers(real_kohya[family], tmp_path, old_names=old_names)
    assert all(k.startswith("unet.") for k in load_lora(bare)[0]) and not load_lora(bare)[1]
    report = _inspect(bare, capsys)
    assert report["architecture"] == family
    assert "metadata" not in report["architecture_reason"]


def test_the_sdxl_file_converts_back_to_sd_scripts_original_layout_names(real_kohya, tmp_path: Path) -> None:
    bare = _bare_diffusers(real_kohya["SDXL"], tmp_path)
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(bare), "--to", "kohya", "--out", str(back)]) == 0
    keys = set(load_lora(back)[0])
    assert keys == set(load_lora(real_kohya["SDXL"])[0])
    assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight" in keys


def test_the_sd1_file_converts_back_to_diffusers_layout_names(real_kohya, tmp_path: Path) -> None:
    bare = _bare_diffusers(real_kohya["SD1"], tmp_path)
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(bare), "--to", "kohya", "--out", str(back)]) == 0
    assert set(load_lora(back)[0]) == set(load_lora(real_kohya["SD1"])[0])


def _subset(path: Path, keep, tmp_path: Path, name: str) -> Path:
    tensors = {k: v for k, v in load_lora(path)[0].items() if keep(k)}
    assert tensors
    out = tmp_path / name
    return _save_bare(out, tensors)


@pytest.mark.parametrize("family", ["SD1", "SD2", "SDXL"])
def test_cross_attention_keys_and_values_alone_tell_the_family_by_the_context_width(
        real_kohya, family: str, tmp_path: Path, capsys) -> None:
    """attn2.to_k/to_v of the first transformer of down_blocks.1: the same names on all three bases."""
    bare = _bare_diffusers(real_kohya[family], tmp_path)
    first = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2."
    only = _subset(bare, lambda k: k.startswith((first + "to_k.", first + "to_v.")), tmp_path, "kv.safetensors")
    report = _inspect(only, capsys)
    assert report["architecture"] == family
    width = {"SD1": 768, "SD2": 1024, "SDXL": 2048}[family]
    assert f"{width}-wide text context" in report["architecture_reason"]


def _self_attention_of_first_transformers(key: str) -> bool:
    return (".transformer_blocks.0.attn1." in key
            and key.startswith(("unet.down_blocks.1.", "unet.down_blocks.2.", "unet.mid_block.")))


@pytest.mark.parametrize("family", ["SD2", "SDXL"])
def test_self_attention_alone_on_shared_widths_says_it_cannot_tell(real_kohya, family: str, tmp_path: Path,
                                                                   capsys) -> None:
    """SD2 and SDXL both have 640/1280-wide self-attention with Linear layers in these blocks: no guess."""
    bare = _bare_diffusers(real_kohya[family], tmp_path)
    only = _subset(bare, _self_attention_of_first_transformers, tmp_path, "attn1.safetensors")
    report = _inspect(only, capsys)
    assert report["architecture"] == "unknown" and "cannot tell" in report["architecture_reason"]
    assert main(["lora", "inspect", str(only)]) == 0
    assert "architecture  unknown   (cannot tell" in capsys.readouterr().out


def test_converting_a_file_of_unclear_family_asks_for_base_in_one_line(real_kohya, tmp_path: Path, capsys) -> None:
    bare = _bare_diffusers(real_kohya["SDXL"], tmp_path)
    only = _subset(bare, _self_attention_of_first_transformers, tmp_path, "attn1.safetensors")
    capsys.readouterr()
    out = tmp_path / "k.safetensors"
    assert main(["lora", "convert", str(only), "--to", "kohya", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base sdxl or --base sd" in err and not out.exists()
    assert main(["lora", "convert", str(only), "--to", "kohya", "--out", str(out), "--base", "sdxl"]) == 0
    keys = set(load_lora(out)[0])
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert keys <= set(load_lora(real_kohya["SDXL"])[0])
    assert lora_family(load_lora(out)[0], load_lora(out)[1]) == "sdxl"  # the output says what it was told


def test_a_base_that_contradicts_the_shapes_is_one_line(real_kohya, tmp_path: Path, capsys) -> None:
    bare = _bare_diffusers(real_kohya["SDXL"], tmp_path)
    capsys.readouterr()
    out = tmp_path / "k.safetensors"
    assert main(["lora", "convert", str(bare), "--to", "kohya", "--out", str(out), "--base", "sd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base sd contradicts" in err and "SDXL" in err and not out.exists()


def test_kohya_names_in_diffusers_layout_are_sdxl_by_shape_and_convert_to_the_original_layout(
        real_kohya, tmp_path: Path, capsys) -> None:
    """Some converters write SDXL as lora_unet_down_blocks_1_…: the same names an SD1 LoRA has."""
    from lora_tui.train.lora_tools.convert import kohya_to_path

    original = load_lora(real_kohya["SDXL"])[0]
    renamed = {}
    for key, value in original.items():
        module, _, tail = key.partition(".")
        renamed[f"lora_unet_{kohya_to_path(module)[1].replace('.', '_')}.{tail}"] = value
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0_") for k in renamed)
    path = tmp_path / "diffusers-layout-kohya.safetensors"
    _save_bare(path, renamed)
    assert lora_family(renamed) == "sdxl" and lora_family(list(renamed)) == "sdxl"  # depth 2/10 in the names
    assert _inspect(path, capsys)["architecture"] == "SDXL"
    out = tmp_path / "k.safetensors"
    assert main(["lora", "convert", str(path), "--to", "kohya", "--out", str(out)]) == 0
    assert set(load_lora(out)[0]) == set(original)


@pytest.fixture(scope="module")
def tiny_sdxl_kohya(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from lora_tui.train.model.tiny_sdxl import build_tiny_sdxl

    tiny = build_tiny_sdxl(seed=0)
    net = LoRANetwork(None, tiny["unet"], dim=2, alpha=1.0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    path = tmp_path_factory.mktemp("tiny-xl") / "tiny-xl.safetensors"
    net.save_weights(path, {})
    return path, tiny


@pytest.mark.parametrize("via", ["diffusers", "peft"])
def test_a_bare_tiny_sdxl_unet_lora_round_trips_without_metadata(tiny_sdxl_kohya, via: str, tmp_path: Path,
                                                                capsys) -> None:
    """Tiny widths match no real base; the tiny SDXL's layout (attention in up_blocks.0, depth 2) still tells."""
    kohya, _ = tiny_sdxl_kohya
    if via == "diffusers":
        bare = _bare_diffusers(kohya, tmp_path)
        assert _inspect(bare, capsys)["architecture"] == "SDXL"
    else:
        bare = tmp_path / "peft"
        assert main(["lora", "convert", str(kohya), "--to", "peft", "--out", str(bare)]) == 0
        file = bare / "unet" / "pytorch_lora_weights.safetensors"
        tensors, meta = load_lora(file)
        _save_bare(file, tensors, {"lora_adapter_metadata": meta["lora_adapter_metadata"]})
    back = tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(bare), "--to", "kohya", "--out", str(back)]) == 0
    again, original = load_lora(back)[0], load_lora(kohya)[0]
    assert set(again) == set(original)
    # without lora_adapter_metadata a diffusers file's alpha is its rank (diffusers' reading); factors are exact
    same = [k for k in original if via == "peft" or not k.endswith(".alpha")]
    assert all(torch.equal(again[k].float(), original[k].float()) for k in same)


def test_tiny_self_attention_only_is_unknown_rather_than_a_guess(tiny_sdxl_kohya, tmp_path: Path, capsys) -> None:
    kohya, _ = tiny_sdxl_kohya
    bare = _bare_diffusers(kohya, tmp_path)
    only = _subset(bare, _self_attention_of_first_transformers, tmp_path, "attn1.safetensors")
    report = _inspect(only, capsys)
    assert report["architecture"] == "unknown" and "cannot tell" in report["architecture_reason"]


def test_a_kohya_diffusers_layout_sdxl_file_loads_as_network_weights_on_sdxl(tiny_sdxl_kohya, tmp_path: Path) -> None:
    """sd-scripts renames such a file to the original layout when it loads it on SDXL; so do we, told by shape."""
    from lora_tui.train.lora_tools.convert import kohya_to_path

    kohya, tiny = tiny_sdxl_kohya
    original = load_lora(kohya)[0]
    renamed = {}
    for key, value in original.items():
        module, _, tail = key.partition(".")
        renamed[f"lora_unet_{kohya_to_path(module)[1].replace('.', '_')}.{tail}"] = value
    path = tmp_path / "renamed.safetensors"
    _save_bare(path, renamed)
    net = LoRANetwork(None, tiny["unet"], dim=2, alpha=1.0)
    info = net.load_weights(path)
    assert info.loaded_keys == len(original) and not info.missing_keys
    assert all(torch.equal(net.state_dict()[k], v) for k, v in original.items())


def test_classify_names_conflicting_evidence() -> None:
    verdict = classify({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 1280),
                        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320, 1, 1)})
    assert verdict.family == "unknown" and verdict.conflict and verdict.is_sdxl is None
    assert verdict.reason().startswith("conflicting evidence: ")


def test_bake_takes_the_models_family_for_a_file_that_cannot_say(tiny_sdxl_kohya, tmp_path: Path) -> None:
    """An SDXL base model settles what the LoRA's names and shapes leave open: same checkpoint as its kohya twin."""
    from safetensors.torch import load_file

    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

    kohya, _ = tiny_sdxl_kohya
    model = make_tiny_sdxl(tmp_path / "model", seed=0)
    bare = _bare_diffusers(kohya, tmp_path)
    only = _subset(bare, _self_attention_of_first_transformers, tmp_path, "attn1.safetensors")
    assert classify({k: v.shape for k, v in load_lora(only)[0].items()}).family == "unknown"
    twin = tmp_path / "twin.safetensors"
    assert main(["lora", "convert", str(only), "--to", "kohya", "--base", "sdxl", "--out", str(twin)]) == 0
    baked = {}
    for name, lora in (("bare", only), ("twin", twin)):
        baked[name] = tmp_path / f"baked-{name}.safetensors"
        assert main(["lora", "bake", str(model), str(lora), "--out", str(baked[name])]) == 0
    a, b = load_file(str(baked["bare"])), load_file(str(baked["twin"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    plain = tmp_path / "plain.safetensors"
    assert main(["lora", "bake", str(model), str(twin), "--weight", "0", "--out", str(plain)]) == 0
    changed = [k for k, v in load_file(str(plain)).items() if not torch.equal(a[k], v)]
    assert changed and all(".attn1." in k for k in changed)  # the delta went where the names said

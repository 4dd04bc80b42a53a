"""`lora-tui lora merge` and `lora-tui lora bake`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.train.lora_tools.factors import split_modules
from lora_tui.train.network.file import load_lora
from tests.lora_tools.conftest import random_lora


def test_merge_of_a_lora_with_itself_at_half_and_half_equals_the_original(lora_file: Path, tmp_path: Path,
                                                                          capsys) -> None:
    out = tmp_path / "self.safetensors"
    assert main(["lora", "merge", str(lora_file), str(lora_file), "--ratios", "0.5,0.5", "--dim", "8",
                 "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    old, new = split_modules(load_lora(lora_file)[0]), split_modules(load_lora(out)[0])
    assert new.keys() == old.keys()
    for name, f in old.items():
        assert torch.allclose(new[name].delta(), f.delta(), atol=1e-5), name
    assert load_lora(out)[1]["ss_network_dim"] == "8"


def test_merge_is_the_weighted_sum_truncated_to_the_rank(lora_file: Path, tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    other = random_lora(tiny_model_dir, tmp_path / "b.safetensors", dim=4, alpha=4.0, seed=1)
    out = tmp_path / "ab.safetensors"
    assert main(["lora", "merge", str(lora_file), str(other), "--ratios", "0.7,0.3", "--dim", "12",
                 "--out", str(out)]) == 0  # rank 8 + 4: nothing is lost at 12
    a, b = split_modules(load_lora(lora_file)[0]), split_modules(load_lora(other)[0])
    merged = split_modules(load_lora(out)[0])
    for name in a:
        expected = 0.7 * a[name].delta() + 0.3 * b[name].delta()
        assert torch.allclose(merged[name].delta(), expected, atol=1e-5), name


def test_bake_then_unload_equals_adding_the_delta(lora_file: Path, tiny_single_file: Path, tmp_path: Path) -> None:
    from lora_tui.train.model.load import load_base_model
    from lora_tui.train.network.lora import LoRANetwork

    baked = tmp_path / "baked.safetensors"
    assert main(["lora", "bake", str(tiny_single_file), str(lora_file), "--weight", "0.7", "--out", str(baked)]) == 0
    (tmp_path / "baked.tokenizer").symlink_to(tiny_single_file.parent / "tokenizer")
    result = load_base_model(baked)
    base = load_base_model(tiny_single_file)
    net = LoRANetwork.from_weights(lora_file, base.text_encoder, base.unet)
    deltas = {id(lora.org_module): lora.delta_weight() for lora in net.loras}
    checked = 0
    for part in ("unet", "text_encoder"):
        own = dict(getattr(base, part).named_modules())
        for name, module in getattr(result, part).named_modules():
            if not hasattr(module, "weight") or not isinstance(module.weight, torch.Tensor):
                continue
            base_weight = own[name].weight
            delta = deltas.get(id(own[name]))
            unloaded = module.weight - (0.7 * delta if delta is not None else 0)
            assert torch.allclose(unloaded, base_weight, atol=1e-5), name
            checked += delta is not None
    assert checked == len(net.loras)


def test_bake_refuses_to_write_over_the_model(lora_file: Path, tiny_single_file: Path, capsys) -> None:
    before = tiny_single_file.stat().st_mtime_ns
    assert main(["lora", "bake", str(tiny_single_file), str(lora_file), "--out", str(tiny_single_file)]) == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert tiny_single_file.stat().st_mtime_ns == before


@pytest.mark.parametrize("ratios", ["0.5", "a,b"])
def test_merge_with_bad_ratios_is_one_line_error(lora_file: Path, tmp_path: Path, capsys, ratios: str) -> None:
    assert main(["lora", "merge", str(lora_file), str(lora_file), "--ratios", ratios, "--dim", "4",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists()

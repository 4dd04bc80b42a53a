"""`lora-tui lora resize`: sd-scripts' resize_lora.py semantics, checked against a direct SVD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main
from lora_tui.train.lora_tools.factors import split_modules
from lora_tui.train.lora_tools.resize import choose_rank, resize
from lora_tui.train.network.file import load_lora


def _reference(up: torch.Tensor, down: torch.Tensor, rank: int) -> tuple[torch.Tensor, float]:
    """Full SVD of the product, truncated (what sd-scripts computes), and its retained energy."""
    full = up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
    u, s, vh = torch.linalg.svd(full.double(), full_matrices=False)
    trunc = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return trunc, float(s[:rank].pow(2).sum().sqrt() / s.pow(2).sum().sqrt())


def test_resize_matches_truncated_svd_and_keeps_strength(lora_file: Path) -> None:
    state_dict, _ = load_lora(lora_file)
    old = split_modules(state_dict)
    new, results = resize(state_dict, dim=3, conv_dim=2)
    assert len(results) == len(old)
    for result in results:
        before, after = old[result.name], new[result.name]
        rank = 2 if before.conv else 3  # sd-scripts: every 4-D module (1×1 too) takes the conv rank
        assert after.rank == rank == result.new_rank
        trunc, energy = _reference(before.up.float(), before.down.float(), rank)
        product = after.matrices()[0] @ after.matrices()[1]
        assert torch.allclose(product.double(), trunc, atol=1e-4, rtol=1e-3)
        assert result.fro_retained == pytest.approx(energy, rel=1e-4)
        assert after.scale == pytest.approx(before.scale)  # alpha scaled with the rank, as sd-scripts


def test_resize_to_the_same_rank_keeps_every_delta(lora_file: Path) -> None:
    state_dict, _ = load_lora(lora_file)
    old = split_modules(state_dict)
    new, results = resize(state_dict, dim=8)  # conv modules (1×1 at rank 8, 3×3 at 4) too
    assert all(r.fro_retained == pytest.approx(1.0) for r in results)
    for name, f in new.items():
        assert torch.allclose(f.delta(), old[name].delta(), atol=1e-5)


@pytest.mark.parametrize(("method", "param", "expected"), [
    ("sv_ratio", 4.0, 3),  # singular values above 8/4 = 2: 8, 4, 3
    ("sv_cumulative", 0.7, 2),  # cumulative 8/16.5 = 0.48, 12/16.5 = 0.73 ≥ 0.7
    ("sv_fro", 0.95, 3),  # energy (64+16)/91.25 = 0.877 < 0.95² = 0.9025; +9 → 0.975
])
def test_dynamic_methods_choose_rank_like_sd_scripts(method: str, param: float, expected: int) -> None:
    s = torch.tensor([8.0, 4.0, 3.0, 1.5])
    rank = choose_rank(s, 10, method, param)
    assert rank == expected
    assert choose_rank(s, 2, method, param) == min(expected, 2)  # --dim caps the dynamic rank
    assert choose_rank(torch.zeros(4), 10, method, param) == 1  # a zero module keeps rank 1


def test_resize_cli_then_inspect_round_trip(lora_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "half.safetensors"
    assert main(["lora", "resize", str(lora_file), "--dim", "4", "--conv-dim", "2", "--out", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Frobenius energy retained" in printed and f"wrote {out}" in printed
    assert main(["lora", "inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ranks"]["rank"] == 4 and report["ranks"]["alpha"] == pytest.approx(2.0)  # 4/8 · 4
    assert report["ranks"]["conv_rank"] == 2 and report["ranks"]["conv_alpha"] == pytest.approx(1.0)
    assert report["training"]["network_dim"] == "4"
    assert report["training"]["comment"].startswith("dimension is resized from 8 to 4 (conv: 2); first try")
    assert report["training"]["steps"] == "120"  # training facts survive


def test_resize_never_writes_over_its_input_without_in_place(lora_file: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(lora_file.read_bytes())
    assert main(["lora", "resize", str(copy), "--dim", "2", "--out", str(copy)]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert copy.read_bytes() == lora_file.read_bytes()
    assert main(["lora", "resize", str(copy), "--dynamic", "sv_fro", "0.9", "--in-place", "--quiet"]) == 0
    meta = load_lora(copy)[1]
    assert meta["ss_network_dim"] == "Dynamic"
    assert "Dynamic resize with sv_fro: 0.9 from 8" in meta["ss_training_comment"]
    assert sorted(tmp_path.iterdir()) == [copy]  # no temporary left behind


def test_default_output_name_sits_beside_the_input(lora_file: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "judy.safetensors"
    copy.write_bytes(lora_file.read_bytes())
    assert main(["lora", "resize", str(copy), "--dim", "2", "--quiet"]) == 0
    assert (tmp_path / "judy-r2.safetensors").is_file()
    assert main(["lora", "resize", str(copy), "--dim", "2", "--quiet"]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err

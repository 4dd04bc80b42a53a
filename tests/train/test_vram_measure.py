"""core.vram's table re-measured on the meta device (train/diagnostics/vram_measure.py), so it cannot drift.

The counts come from the shipped configs; the activation slopes are checked at one latent size each
(64×64, the table holds the 128×128 figures) to within 3 %, the spread the table's docstring states.
"""

from __future__ import annotations

import pytest

from lora_tui.core import vram
from lora_tui.train.diagnostics import vram_measure as vm


@pytest.mark.parametrize("family", ["sd_v1", "sd_v2", "sdxl"])
def test_parameter_counts_match_the_shipped_configs(family: str) -> None:
    counts = vm.param_counts(family)
    table = vram.FAMILIES[family]
    assert (counts["unet"], counts["vae"], counts["text_encoders"]) == (
        table.unet_params, table.vae_params, table.text_encoder_params)


@pytest.mark.parametrize(("family", "checkpointing"), [("sd_v1", False), ("sd_v1", True), ("sdxl", False),
                                                       ("sdxl", True)])
def test_activation_slope_matches_a_fresh_measurement(family: str, checkpointing: bool) -> None:
    table = vram.FAMILIES[family]
    per_px = table.act_per_latent_px_gc if checkpointing else table.act_per_latent_px
    measured = vm.unet_training_peak(family, (64, 64), batch=1, gradient_checkpointing=checkpointing)
    assert measured == pytest.approx(64 * 64 * per_px, rel=0.03)


def test_activations_are_linear_in_the_batch() -> None:
    one = vm.unet_training_peak("sd_v1", (32, 48), batch=1)
    assert vm.unet_training_peak("sd_v1", (32, 48), batch=3) == pytest.approx(3 * one, rel=0.01)


def test_flash_attention_keeps_no_score_matrix() -> None:
    """The measurement routes SDPA like a GPU does: its memory grows linearly in the tokens, not squared."""
    import torch

    def peak(tokens: int) -> int:
        with torch.device("meta"):
            q = torch.randn(1, 8, tokens, 64, dtype=torch.bfloat16, requires_grad=True)
        mode = vm.LiveBytes([q])
        with vm.flash_sdpa(), mode:
            torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
        return mode.peak

    assert peak(8192) == pytest.approx(2 * peak(4096), rel=0.01)


def test_vae_and_text_encoder_figures_match() -> None:
    per_px = vram.FAMILIES["sd_v1"].vae_encode_per_px
    assert vm.vae_encode_peak("sd_v1", (256, 256)) == pytest.approx(256 * 256 * per_px, rel=0.03)
    assert vm.text_encoder_training_peak("sd_v1") == pytest.approx(vram.FAMILIES["sd_v1"].te_act_per_sample, rel=0.03)

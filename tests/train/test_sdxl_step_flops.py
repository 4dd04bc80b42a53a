"""The SDXL LoRA step's backward does what issue 13's FLOPs budget allows, and nothing more (meta device).

bench/bench_sdxl_flops.py reports the figures at 1024 px; this pins the two properties at a small
latent so they cannot regress unnoticed: no gradient for a frozen weight, and no forward op run again
in the backward unless gradient checkpointing is on.
"""

from __future__ import annotations

import pytest

from bench.bench_sdxl_flops import train_step_flops


@pytest.fixture(scope="module")
def steps() -> dict[str, dict[str, float]]:
    return {"lora": train_step_flops(latent=16, lora="ours", dim=4),
            "checkpointed": train_step_flops(latent=16, lora="ours", dim=4, gradient_checkpointing=True),
            "full": train_step_flops(latent=16, lora="full")}


def test_lora_backward_computes_no_frozen_weight_gradient(steps: dict[str, dict[str, float]]) -> None:
    assert steps["lora"]["frozen_with_grad"] == 0 and steps["lora"]["weight_grad_convs"] == 0
    assert steps["full"]["weight_grad_convs"] > 0  # the counter does see weight gradients when they happen


def test_lora_backward_recomputes_only_with_gradient_checkpointing(steps: dict[str, dict[str, float]]) -> None:
    assert steps["lora"]["forward_ops_in_backward"] == 0
    assert steps["checkpointed"]["forward_ops_in_backward"] > 0


def test_lora_step_costs_its_forward_plus_input_gradients(steps: dict[str, dict[str, float]]) -> None:
    """The LoRA step's backward stays near its forward (input gradients); a full fine-tune adds every dW."""
    lora, full = steps["lora"], steps["full"]
    assert lora["bwd"] < 1.2 * lora["fwd"] and full["bwd"] > 1.5 * lora["bwd"]
    assert lora["lora_own"] > 0 and lora["modules"] == 722

"""Every optimizer option of the built-in trainer takes real steps on the tiny SDXL model.

As on SD1 (tests/train/test_trainer.py): AdamW (foreach on the CPU; torch's fused kernel with
`fused=True`, what a CUDA run picks by itself), AdamW8bit (bitsandbytes), Lion, SGDNesterov, Adafactor
(relative step and fixed lr), Prodigy and DAdaptation. Each run: finite losses, every LoRA tensor of
both text encoders and the U-Net moved, and the saved file loads back into an SDXL network key for key.
Optional packages that are not installed skip with the reason.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.train.trainer_helpers import events, run_training, status, tiny_project, train_argv

pytestmark = pytest.mark.usefixtures("no_network", "one_torch_thread")

CASES = {
    "AdamW": ("AdamW", [], None),
    "AdamW-fused": ("AdamW", ["fused=True"], None),
    "AdamW8bit": ("AdamW8bit", ["min_8bit_size=0"], "bitsandbytes"),  # tiny tensors: 8-bit state for all
    "Lion": ("Lion", [], None),
    "SGDNesterov": ("SGDNesterov", [], None),
    "Adafactor-relative": ("AdaFactor", [], None),
    "Adafactor-lr": ("AdaFactor", ["relative_step=False", "scale_parameter=False", "warmup_init=False"], None),
    "Prodigy": ("Prodigy", [], "prodigyopt"),
    "DAdaptation": ("DAdaptation", [], "dadaptation"),
}
# lr per optimizer family, as its users set it (Prodigy/DAdaptation pick their own step size from lr 1.0)
LR = {"Prodigy": 1.0, "DAdaptation": 1.0, "SGDNesterov": 0.1}



def _keep_setup(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The run's Setup and its LoRA tensors as they were before the first step."""
    from lora_tui.train.loop import train as train_mod

    seen: dict[str, Any] = {}
    real = train_mod.prepare

    def keep(*args: Any, **kwargs: Any) -> Any:
        setup = real(*args, **kwargs)
        seen["setup"] = setup
        seen["initial"] = {k: v.detach().clone() for k, v in setup.network.state_dict().items()}
        return setup

    monkeypatch.setattr(train_mod, "prepare", keep)
    return seen


def base_layers(model: Path) -> int:
    import json

    return int(json.loads((model / "text_encoder" / "config.json").read_text())["num_hidden_layers"])


@pytest.mark.parametrize("case", list(CASES))
def test_each_optimizer_trains_the_sdxl_lora_and_the_file_loads(case: str, tmp_path: Path, tiny_sdxl_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    optimizer, optimizer_args, package = CASES[case]
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (optimizer_type {optimizer} needs it)")
    seen = _keep_setup(monkeypatch)
    training: dict[str, Any] = {"optimizer_type": optimizer, "max_train_steps": 3,
                                "learning_rate": LR.get(optimizer, 1e-3), "save_precision": "float"}
    if optimizer_args:
        training["optimizer_args"] = optimizer_args
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training=training)
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 0, [e for e in events(run) if e["kind"] == "error"]
    assert status(run)["state"] == "finished"
    losses = [e["loss"] for e in events(run) if e["kind"] == "step"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)

    from lora_tui.train.model.sdxl_load import load_sdxl_model
    from lora_tui.train.network.file import load_lora
    from lora_tui.train.network.lora import LoRANetwork

    saved, meta = load_lora(root / "output" / "tiny.safetensors")
    initial = seen["initial"]
    assert set(saved) == set(initial)
    # every module's up factor starts at zero: each one non-zero now means the optimizer stepped them all
    # (sd-scripts' SDXL conditioning reads TE1's penultimate layer: its last layer's LoRA gets no gradient)
    unused = f"lora_te1_text_model_encoder_layers_{base_layers(tiny_sdxl_dir) - 1}_"
    zero = [k for k in saved if k.endswith("lora_up.weight") and not k.startswith(unused) and not saved[k].any()]
    assert not zero, f"{len(zero)} up factors never moved: {zero[:10]}"
    # down factors get a gradient only once up is non-zero; sign-based (Lion) or plain SGD steps on tiny
    # gradients may leave single ones where they were after 3 steps, so the check is that they moved at all
    moved = [k for k in saved if k.endswith("lora_down.weight") and not torch.equal(saved[k], initial[k])]
    assert len(moved) > len([k for k in saved if k.endswith("lora_down.weight")]) // 2
    assert {k.split("_", 2)[1] for k in saved} >= {"te1", "te2", "unet"}
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_optimizer"].split("(")[0].endswith(
        type(seen["setup"].optimizer.optimizer if hasattr(seen["setup"].optimizer, "optimizer")
             else seen["setup"].optimizer).__name__)

    base = load_sdxl_model(tiny_sdxl_dir)
    again = LoRANetwork(base.text_encoders, base.unet, dim=4, alpha=4.0)
    info = again.load_weights(root / "output" / "tiny.safetensors")
    assert info.loaded_keys == len(saved) and not info.missing_keys
    if optimizer == "AdamW8bit":  # the moments really are 8-bit
        opt = seen["setup"].optimizer
        state = (getattr(opt, "optimizer", opt)).state
        assert state and all(s["state1"].dtype == torch.uint8 for s in state.values())


def test_fused_backward_pass_is_refused_on_sdxl_as_on_sd1(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    """sd-scripts' LoRA scripts accept --fused_backward_pass (Adafactor only) and then do not fuse anything;
    the built-in trainer says so in one line instead of training as if it did."""
    root = tiny_project(tmp_path / "p", tiny_sdxl_dir, training={"optimizer_type": "AdaFactor",
                                                                 "max_train_steps": 1})
    from lora_tui.core.errors import TrainError
    from lora_tui.train.loop.args import parse_args

    with pytest.raises(TrainError, match="fused_backward_pass") as err:
        parse_args([*train_argv(root), "--fused_backward_pass"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["AdamW8bit", "Lion", "Adafactor-relative", "Prodigy"])
def test_resuming_restores_each_optimizers_state_on_sdxl(case: str, tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    """Stopped at step 3 and resumed: steps 4-6 and the final file equal the uninterrupted run's."""
    optimizer, optimizer_args, package = CASES[case]
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (optimizer_type {optimizer} needs it)")
    from lora_tui.train.network.file import load_lora

    training: dict[str, Any] = {"optimizer_type": optimizer, "learning_rate": LR.get(optimizer, 1e-3),
                                "max_train_steps": 6, "save_every_n_steps": 3, "save_state": True,
                                "save_precision": "float"}
    if optimizer_args:
        training["optimizer_args"] = optimizer_args
    whole = tiny_project(tmp_path / "whole", tiny_sdxl_dir, training=training)
    assert run_training(train_argv(whole), tmp_path / "run-whole") == 0
    part = tiny_project(tmp_path / "part", tiny_sdxl_dir, training=training)
    assert run_training(train_argv(part), tmp_path / "run-a") == 0
    state = tmp_path / "run-a" / "state" / "tiny-step00000003-state"
    assert run_training(train_argv(part, "--resume", str(state)), tmp_path / "run-b") == 0

    def losses(run: str) -> list[float]:
        return [e["loss"] for e in events(tmp_path / run) if e["kind"] == "step"]

    assert losses("run-b") == pytest.approx(losses("run-whole")[3:], rel=1e-5)
    a, b = load_lora(whole / "output" / "tiny.safetensors")[0], load_lora(part / "output" / "tiny.safetensors")[0]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)

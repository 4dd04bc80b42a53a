"""FLOPs per sample of an SDXL UNet-only LoRA step at 1024 px, counted on the full architecture (issue 13).

    .venv/bin/python bench/bench_sdxl_flops.py [--json out.json]

The budget: forward + the input-gradient backward of the frozen U-Net + the LoRA's own cost, and
nothing more. Counted with `torch.utils.flop_counter.FlopCounterMode` on the meta device (no weights,
no memory, about a minute on 2 cores) from the shipped SDXL 1.0 U-Net config
(`lora_tui/train/model/model_configs/sdxl/unet/config.json`), 128×128 latents, text states
(1, 77, 2048), pooled (1, 1280) and the six size/crop ids, epsilon MSE, the trainer's `LoRANetwork`
(sd-scripts' SDXL targets, 722 U-Net modules) at rank 4 and 32, base frozen.

Rows, each forward + backward per sample:
* frozen U-Net, input gradient only (no LoRA; the latents require grad): the floor a LoRA step sits on;
* ours: LoRA r4 / r32 on sd-scripts' default targets, UNet-only;
* ours with gradient checkpointing (the recomputed forward is the only addition);
* a full fine-tune (every U-Net weight trainable), for comparison.

And the two checks the issue asks for, made on the same step: after the backward no frozen weight
holds a gradient (and no conv backward was asked for a weight gradient of a frozen conv), and the
backward runs no forward op (aten.convolution, attention forward) unless gradient checkpointing is on.
FlopCounterMode counts matmul, convolution and attention only (not elementwise, GroupNorm, SiLU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SDXL_UNET = ROOT / "lora_tui" / "train" / "model" / "model_configs" / "sdxl" / "unet" / "config.json"
FORWARD_OPS = ("aten.convolution.default", "aten._scaled_dot_product_flash_attention_for_cpu.default",
               "aten._scaled_dot_product_flash_attention.default",
               "aten._scaled_dot_product_efficient_attention.default", "aten._safe_softmax.default",
               "aten._softmax.default")


class OpCounter(TorchDispatchMode):
    """Counts aten ops by name, and conv backwards that were asked for a weight gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.weight_grad_convs = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func)
        self.ops[name] += 1
        if name == "aten.convolution_backward.default" and args[-1][1]:
            self.weight_grad_convs += 1
        return func(*args, **(kwargs or {}))


def sdxl_unet_config() -> dict[str, Any]:
    config = json.loads(SDXL_UNET.read_text("utf-8"))
    return {k: v for k, v in config.items() if not k.startswith("_")}


def train_step_flops(latent: int = 128, batch: int = 1, *, lora: str = "ours", dim: int = 4,
                     gradient_checkpointing: bool = False) -> dict[str, Any]:
    """One SDXL U-Net training step on the meta device: FLOPs per sample and the backward's checks.

    `lora`: "ours" (LoRANetwork, UNet-only, base frozen), "frozen" (no LoRA, only the latents need a
    gradient) or "full" (every U-Net weight trainable)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from lora_tui.train.network.lora import LoRANetwork

    config = sdxl_unet_config()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        unet.requires_grad_(lora == "full")
        network = None
        if lora == "ours":
            network = LoRANetwork(None, unet, dim=dim, alpha=float(dim), train_text_encoder=False)
            network.apply_to()
        noisy = torch.randn(batch, 4, latent, latent, requires_grad=lora == "frozen")
        noise = torch.randn(batch, 4, latent, latent)
        timesteps = torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, 77, config["cross_attention_dim"])
        added = {"text_embeds": torch.randn(batch, 1280), "time_ids": torch.randn(batch, 6)}
    lora_fwd = [0.0]
    if network is not None:  # the adapters' own matmuls, from the shapes they see: 2·T·r·(in + out)
        def counter(adapter: Any) -> Any:
            def count(down: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
                linear = isinstance(down, torch.nn.Linear)
                features = down.in_features if linear else down.in_channels
                out = adapter.lora_up.out_features if linear else adapter.lora_up.out_channels
                lora_fwd[0] += 2 * inputs[0].numel() // features * adapter.lora_dim * (features + out)
            return count

        for adapter in network.unet_loras:  # the adapter's forward replaces its layer's, so hook its `down`
            adapter.lora_down.register_forward_hook(counter(adapter))
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    with FlopCounterMode(display=False) as fwd_counter:
        pred = unet(noisy, timesteps, states, added_cond_kwargs=added).sample
        loss = F.mse_loss(pred.float(), noise.float())
    ops = OpCounter()
    with FlopCounterMode(display=False) as bwd_counter, ops:
        loss.backward()
    frozen_with_grad = sum(1 for p in unet.parameters() if not p.requires_grad and p.grad is not None)
    trainable = network.parameters() if network is not None else unet.parameters() if lora == "full" else []
    return {
        "fwd": fwd_counter.get_total_flops() / batch, "bwd": bwd_counter.get_total_flops() / batch,
        "frozen_with_grad": frozen_with_grad,
        "trainable": sum(p.numel() for p in trainable),
        "weight_grad_convs": ops.weight_grad_convs,
        "forward_ops_in_backward": sum(ops.ops[name] for name in FORWARD_OPS),
        "modules": len(network.unet_loras) if network is not None else 0,
        "lora_own": 3 * lora_fwd[0] / batch,  # forward + its two gradients (weights and input): 3× its forward
    }


def report() -> dict[str, Any]:
    t = 1e12
    rows = {
        "frozen U-Net, input gradient only": train_step_flops(lora="frozen"),
        "ours, LoRA r4 (sd-scripts targets)": train_step_flops(lora="ours", dim=4),
        "ours, LoRA r32": train_step_flops(lora="ours", dim=32),
        "ours, LoRA r4, gradient checkpointing": train_step_flops(lora="ours", dim=4, gradient_checkpointing=True),
        "full fine-tune (every weight trainable)": train_step_flops(lora="full"),
    }
    batch2 = train_step_flops(lora="ours", dim=4, batch=2)
    print("FLOPs per sample, SDXL 1.0 U-Net (meta device), 1024 px (128×128 latents), text (1,77,2048), no TE")
    for name, r in rows.items():
        total = r["fwd"] + r["bwd"]
        print(f"  {name:<42}: fwd {r['fwd'] / t:7.3f} + bwd {r['bwd'] / t:7.3f} = {total / t:7.3f} TF "
              f"(bwd/fwd {r['bwd'] / r['fwd']:.2f}); frozen weights with a gradient {r['frozen_with_grad']}, "
              f"weight-grad convs {r['weight_grad_convs']}, forward ops in backward {r['forward_ops_in_backward']}")
    floor, ours = rows["frozen U-Net, input gradient only"], rows["ours, LoRA r4 (sd-scripts targets)"]
    full = rows["full fine-tune (every weight trainable)"]
    lora_cost = ours["lora_own"]
    bound = floor["fwd"] + floor["bwd"] + lora_cost
    print(f"  LoRA r4's own cost (3× its forward matmuls): {lora_cost / t:.3f} TF; frozen floor + LoRA = "
          f"{bound / t:.3f} TF; ours {(ours['fwd'] + ours['bwd']) / t:.3f} TF "
          f"({'within' if ours['fwd'] + ours['bwd'] <= bound else 'OVER'}: nothing more); "
          f"batch 2: {(batch2['fwd'] + batch2['bwd']) / t:.3f} TF/sample")
    print(f"  ours r4 vs full fine-tune: {(ours['fwd'] + ours['bwd']) / (full['fwd'] + full['bwd']):.1%} of its FLOPs; "
          f"{ours['modules']} LoRA modules, {ours['trainable']:,} trainable parameters")
    return {"rows": rows, "batch2": batch2, "lora_cost": lora_cost, "bound": bound}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    out = report()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

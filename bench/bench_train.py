"""Training-step budgets of the built-in trainer, measured against a diffusers-style reference loop.

    .venv/bin/python bench/bench_train.py [--quick] [--steps N] [--warmup N] [--heads H] [--gpu]
    .venv/bin/python bench/bench_train.py --sdxl [--quick]   (SDXL: bench/bench_train_sdxl.py)

1. Steady-state step time, CPU, fp32, same process, interleaved rounds (every variant once per round,
   the order rotated each round), warm-up steps discarded, medians. The reference loop is written here
   and does what diffusers' ``examples/text_to_image/train_text_to_image_lora.py`` does each step
   (VAE encode + text encoder forward every step, uniform timesteps, ``add_noise``, epsilon MSE,
   backward, ``clip_grad_norm_`` 1.0, AdamW, LR-scheduler step; PEFT LoRA r4/α4 on
   ``to_q/to_k/to_v/to_out.0`` via ``unet.add_adapter``). "Ours" is the real trainer: a project on
   disk, ``parse_args`` → ``build_dataset`` → ``setup.prepare`` and the optimizer step of
   ``loop.Trainer._epochs``. Budgets: ours ≥ 1.3× the reference with cached latents, ≥ 1.0× without.
   Our LoRA scope is sd-scripts' (every Linear/1×1 Conv in ``Transformer2DModel``); the like-for-like
   rows restrict it to the reference's four attention projections through the trainer's own
   ``--network_weights`` + ``--dim_from_weights`` path, so both loops train the same adapters.
2. FLOPs per sample of our cached step on the full SD1.5 U-Net (meta device, no weights), 512 px,
   UNet-only LoRA, no gradient checkpointing: budget ≤ 1.73 TFLOP. Also the reference step's FLOPs
   (VAE encode + CLIP-L + U-Net) and a full fine-tune's, to show where the saving comes from.
3. ``--gpu``: the same comparison on the real SD1.5 architecture (random weights), 512 px, bf16,
   batch 4 and 16, with samples/s, peak memory and MFU against the H100's 989 TFLOP/s bf16 peak.

The CPU model is SD1.5 with every channel count divided by 8 (U-Net 40/80/160/160, VAE 16/32/64/64,
CLIP width 96, cross-attention 96) and everything else kept: 4 levels, 2 layers per block,
cross-attention at three levels, 16 transformer blocks, 10 channels per GroupNorm group and one
attention head per block, which keeps SD1.5's head widths (40/80/160). Keeping SD's 8 heads at 1/8th
of the width would give 5-wide heads, whose attention no real model has and which dominates a CPU step
(``--heads 8`` measures that case).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.stats import spread  # noqa: E402
from lora_tui.train.model.tiny import tokenizer_vocab  # noqa: E402

SD15_CONFIGS = ROOT / "lora_tui" / "train" / "model" / "model_configs" / "sd_v1"
ATTN_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # train_text_to_image_lora.py's target_modules
# what sd-scripts' networks.lora adapts inside Transformer2DModel, as PEFT target names
KOHYA_TARGETS = [*ATTN_TARGETS, "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
H100_BF16_PEAK = 989e12
CAPTION = "sks, a photo of a red object on a table, tag{i}, detailed"


# -- models -----------------------------------------------------------------------------------------


def sd15_configs() -> dict[str, dict[str, Any]]:
    """SD1.5's shipped U-Net, VAE and CLIP-L configs (the trainer's own copies)."""
    out = {}
    for name in ("unet", "vae", "text_encoder"):
        cfg = json.loads((SD15_CONFIGS / f"{name}.json").read_text("utf-8"))
        out[name] = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures",)}
    return out


def mini_configs(heads: int = 1) -> dict[str, dict[str, Any]]:
    """SD1.5 with channels ÷8 (see the module docstring); ``heads`` attention heads per block."""
    full = sd15_configs()
    unet = {**full["unet"], "block_out_channels": [40, 80, 160, 160], "norm_num_groups": 4,
            "cross_attention_dim": 96, "attention_head_dim": heads, "sample_size": 32}
    vae = {**full["vae"], "block_out_channels": [16, 32, 64, 64], "norm_num_groups": 4, "sample_size": 256}
    te = {**full["text_encoder"], "hidden_size": 96, "intermediate_size": 384, "projection_dim": 96}
    return {"unet": unet, "vae": vae, "text_encoder": te}


def build_modules(configs: dict[str, dict[str, Any]], seed: int = 0,
                  device: str | torch.device = "cpu") -> dict[str, torch.nn.Module]:
    """Random-weight U-Net, VAE and CLIP text model; the tokenizer ids fit the text model's vocab."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = len(tokenizer_vocab())
    te_cfg = dict(configs["text_encoder"])
    te_cfg.update(vocab_size=max(vocab, int(te_cfg.get("vocab_size") or 0)), bos_token_id=vocab - 2,
                  eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        te = CLIPTextModel(CLIPTextConfig(**te_cfg))
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": te.eval()}


def write_model(dest: Path, configs: dict[str, dict[str, Any]], *, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> Path:
    """A Diffusers folder both loops load from (the trainer's tiny-model writer does the layout)."""
    from lora_tui.train.model.tiny import _write_diffusers

    modules = {k: m.to(dtype) for k, m in build_modules(configs, device=device).items()}
    _write_diffusers(dest, modules, v_parameterization=False)
    return dest


# -- the project on disk ----------------------------------------------------------------------------


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` JPEG photos-to-be (noise) with one caption file each; both loops decode the same files."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        path.with_suffix(".txt").write_text(CAPTION.format(i=i), encoding="utf-8")
        paths.append(path)
    return paths


def write_project(root: Path, model: Path, images: int, image_size: int, resolution: int, batch: int,
                  training: dict[str, Any]) -> list[str]:
    """A lora-tui project with one subset; returns the trainer's command line for its configs."""
    import tomlkit

    from lora_tui.core import configs, project

    write_images(root / "data" / "a", images, image_size)
    doc = {
        "project": {"name": "bench"},
        "model": {"pretrained_model_name_or_path": str(model)},
        "general": {"caption_extension": ".txt"},
        "datasets": [{"resolution": resolution, "batch_size": batch, "enable_bucket": False,
                      "subsets": [{"image_dir": "data/a", "num_repeats": 1}]}],
        "training": {"network_module": "networks.lora", "network_dim": 4, "network_alpha": 4.0,
                     "network_train_unet_only": True, "learning_rate": 1e-4, "optimizer_type": "AdamW",
                     "lr_scheduler": "constant", "max_grad_norm": 1.0, "max_train_steps": 100_000, "seed": 1,
                     "max_data_loader_n_workers": 0, "save_model_as": "safetensors", "output_name": "bench",
                     **training},
    }
    (root / "lora-tui.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    generated = configs.write(project.load(root))
    return ["--dataset_config", str(generated.dataset_config), "--config_file", str(generated.args_config)]


def write_attention_lora(path: Path, model: Path) -> Path:
    """A fresh rank-4 LoRA file holding only the to_q/to_k/to_v/to_out.0 adapters.

    Given to the trainer as ``--network_weights`` with ``--dim_from_weights``, it limits our network to
    exactly the reference's adapters (the up weights are zero, as in a fresh network).
    """
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from lora_tui.train.network.lora import LoRANetwork

    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
    network = LoRANetwork(None, unet, dim=4, alpha=4.0, train_text_encoder=False)
    keep = tuple(f"_{t.replace('.', '_')}." for t in ATTN_TARGETS)
    state = {k: v.contiguous() for k, v in network.state_dict().items() if any(s in k for s in keep)}
    save_file(state, str(path))
    return path


# -- the two loops ----------------------------------------------------------------------------------


@dataclass
class Variant:
    """One loop under test: ``step()`` runs one optimizer step; times collects its wall times."""

    name: str
    step: Callable[[], float]
    samples: int
    times: list[float] = field(default_factory=list)
    note: str = ""


class Ours:
    """The real trainer: prepare() from a project on disk, then exactly one ``_epochs`` optimizer step.

    Per step, as ``Trainer._epochs`` does with gradient accumulation 1 and one process: the batch from
    the dataset (what the DataLoader with batch_size 1 and ``collate_first`` returns), ``setup.loss``,
    ``(loss / 1).backward()``, the finite-loss check, ``clip_grad_norm_`` with ``max_grad_norm``,
    optimizer, scheduler, ``zero_grad(set_to_none=True)``. Event writing and saving are left out.
    """

    def __init__(self, argv: list[str], accelerator: Any, root: Path, seed: int = 1) -> None:
        from lora_tui.train.data.dataset import build_dataset
        from lora_tui.train.loop.args import parse_args
        from lora_tui.train.loop.events import RunWriter
        from lora_tui.train.loop.setup import prepare

        args = parse_args(argv)
        self.data = build_dataset(Path(args.dataset_config), seed=seed, args=args.values,
                                  prior_loss_weight=float(args.prior_loss_weight or 1.0), root=root)
        self.setup = prepare(args, self.data, accelerator, seed=seed, writer=RunWriter(None))
        self.data.set_max_train_steps(self.setup.total_steps, 1)
        self.max_grad_norm = float(args.max_grad_norm) if args.max_grad_norm else 0.0
        self.device = accelerator.device
        self.count = 0
        self.adapters = len(self.setup.network.unet_loras)
        self.params = sum(p.numel() for p in self.setup.trainable)

    def batch(self) -> dict[str, Any]:
        per_epoch = len(self.data)
        epoch, position = 1 + self.count // per_epoch, self.count % per_epoch
        return self.data[(epoch, position, self.count)]

    def step(self) -> float:
        setup = self.setup
        batch = self.batch()
        loss = setup.loss(batch)
        (loss / 1).backward()
        current = float(loss.detach())
        flags = torch.tensor([current if math.isfinite(current) else float("nan"), 0.0], device=self.device)
        setup.all_reduce_grads(setup.trainable)
        if not math.isfinite(float(flags[0])):
            raise RuntimeError("ours: loss is not finite")
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(setup.trainable, self.max_grad_norm)
        setup.optimizer.step()
        setup.scheduler.step()
        setup.optimizer.zero_grad(set_to_none=True)
        self.count += 1
        return current


class Reference:
    """train_text_to_image_lora.py's per-step work, written here (no code of it copied).

    Models from the same Diffusers folder, frozen, in the weight dtype; PEFT ``LoraConfig(r=4,
    lora_alpha=4, init_lora_weights="gaussian", target_modules=...)`` added with ``unet.add_adapter``;
    AdamW (β 0.9/0.999, wd 1e-2, eps 1e-8) over the trainable parameters; constant LR schedule;
    ``accelerator.prepare`` of U-Net, optimizer and schedule; ``unet.train()``. Each step loads and
    transforms the images (resize shorter side, centre crop, to tensor, normalise to [-1, 1]) and
    tokenizes the captions as its dataset transform does, then runs the VAE and the text encoder.
    """

    def __init__(self, model: Path, images: list[Path], batch: int, resolution: int, accelerator: Any,
                 targets: list[str], weight_dtype: torch.dtype = torch.float32) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from peft import LoraConfig
        from transformers import CLIPTextModel, CLIPTokenizer

        self.accelerator = accelerator
        device = accelerator.device
        self.tokenizer = CLIPTokenizer.from_pretrained(str(model), subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(str(model), subfolder="text_encoder")
        self.vae = AutoencoderKL.from_pretrained(str(model), subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
        self.noise_scheduler = DDPMScheduler.from_pretrained(str(model), subfolder="scheduler")
        for module in (unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        unet.to(device, dtype=weight_dtype)
        self.vae.to(device, dtype=weight_dtype)
        self.text_encoder.to(device, dtype=weight_dtype)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=targets))
        if weight_dtype == torch.float16:  # the script keeps fp16 runs' LoRA weights in fp32
            for p in unet.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        self.lora_layers = [p for p in unet.parameters() if p.requires_grad]
        self.adapters = sum(1 for n, _ in unet.named_modules() if n.endswith(".lora_A"))
        self.params = sum(p.numel() for p in self.lora_layers)
        optimizer = torch.optim.AdamW(self.lora_layers, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=100_000)
        self.unet, self.optimizer, self.lr_scheduler = accelerator.prepare(unet, optimizer, scheduler)
        self.unet.train()
        self.weight_dtype = weight_dtype
        self.images = images
        self.captions = [p.with_suffix(".txt").read_text("utf-8").strip() for p in images]
        self.batch_size = batch
        self.resolution = resolution
        self.count = 0

    def _pixels(self, path: Path) -> torch.Tensor:
        """Resize (shorter side, bilinear), centre crop, [0, 1] tensor, normalise with 0.5/0.5."""
        import numpy as np
        from PIL import Image

        res = self.resolution
        image = Image.open(path).convert("RGB")
        w, h = image.size
        scale = res / min(w, h)
        image = image.resize((max(res, round(w * scale)), max(res, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = round((w - res) / 2.0), round((h - res) / 2.0)
        image = image.crop((left, top, left + res, top + res))
        tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (tensor - 0.5) / 0.5

    def batch(self) -> dict[str, torch.Tensor]:
        n = len(self.images)
        idx = [(self.count * self.batch_size + i) % n for i in range(self.batch_size)]
        pixels = torch.stack([self._pixels(self.images[i]) for i in idx])
        pixels = pixels.to(memory_format=torch.contiguous_format).float()
        ids = self.tokenizer([self.captions[i] for i in idx], max_length=self.tokenizer.model_max_length,
                             padding="max_length", truncation=True, return_tensors="pt").input_ids
        return {"pixel_values": pixels, "input_ids": ids}

    def step(self) -> float:
        acc = self.accelerator
        batch = self.batch()
        device = acc.device
        with acc.accumulate(self.unet):
            pixels = batch["pixel_values"].to(device, dtype=self.weight_dtype)
            latents = self.vae.encode(pixels).latent_dist.sample() * self.vae.config.scaling_factor
            noise = torch.randn_like(latents)
            bsz = latents.shape[0]
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,),
                                      device=latents.device).long()
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
            states = self.text_encoder(batch["input_ids"].to(device), return_dict=False)[0]
            target = noise
            pred = self.unet(noisy, timesteps, states, return_dict=False)[0]
            loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
            avg = acc.gather(loss.repeat(self.batch_size)).mean()
            train_loss = avg.item()
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(self.lora_layers, 1.0)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad()
        self.count += 1
        return train_loss


# -- timing ------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleave(variants: list[Variant], warmup: int, steps: int, device: torch.device) -> None:
    """ABAB…: every variant once per round, the order rotated each round; warm-up rounds dropped."""
    for r in range(warmup + steps):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            _sync(device)
            t0 = time.perf_counter()
            v.step()
            _sync(device)
            if r >= warmup:
                v.times.append(time.perf_counter() - t0)


def ratio_ci(ref: list[float], ours: list[float], rounds: int = 2000) -> tuple[float, float, float]:
    """Median(ref)/median(ours) with a 95 % bootstrap interval over the paired rounds."""
    point = statistics.median(ref) / statistics.median(ours)
    rng = random.Random(0)
    n = min(len(ref), len(ours))
    draws = []
    for _ in range(rounds):
        pick = [rng.randrange(n) for _ in range(n)]
        draws.append(statistics.median(ref[i] for i in pick) / statistics.median(ours[i] for i in pick))
    draws.sort()
    return point, draws[int(0.025 * rounds)], draws[int(0.975 * rounds) - 1]


def fresh_accelerator(mixed_precision: str, cpu: bool) -> Any:
    """accelerate's state is a process-wide singleton: reset it, then make the one all loops share."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


@dataclass
class Spec:
    """One comparison: model, data shape, device and precision."""

    configs: dict[str, dict[str, Any]]
    resolution: int
    batch: int
    images: int
    image_size: int
    device: str = "cpu"
    mixed_precision: str = "no"
    default_scope: bool = True  # also run our default (sd-scripts) scope against PEFT with those targets


def build_variants(spec: Spec, work: Path, model: Path, accelerator: Any) -> list[Variant]:
    """The reference loop(s) and our trainer in its cached/uncached, like-for-like/default forms."""
    weight_dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec.mixed_precision]
    variants: list[Variant] = []
    ref_root = work / "reference"
    paths = write_images(ref_root, spec.images, spec.image_size)

    def add_ref(name: str, targets: list[str]) -> None:
        ref = Reference(model, paths, spec.batch, spec.resolution, accelerator, targets, weight_dtype)
        variants.append(Variant(name, ref.step, spec.batch, note=f"{ref.adapters} adapters, {ref.params:,} params"))

    def add_ours(name: str, training: dict[str, Any]) -> None:
        root = work / name
        training = {"mixed_precision": spec.mixed_precision, **training}
        argv = write_project(root, model, spec.images, spec.image_size, spec.resolution, spec.batch, training)
        ours = Ours(argv, accelerator, root)
        variants.append(Variant(name, ours.step, spec.batch, note=f"{ours.adapters} adapters, {ours.params:,} params"))

    attn_file = write_attention_lora(work / "attention_lora.safetensors", model)
    attn = {"network_weights": str(attn_file), "dim_from_weights": True}
    add_ref("reference", ATTN_TARGETS)
    add_ours("ours cached", {"cache_latents": True, **attn})
    add_ours("ours uncached", {"cache_latents": False, **attn})
    if spec.default_scope:
        add_ref("reference, kohya targets", KOHYA_TARGETS)
        add_ours("ours cached, default targets", {"cache_latents": True})
        add_ours("ours uncached, default targets", {"cache_latents": False})
    return variants


def step_flops(name: str, flops: dict[str, float]) -> float:
    """The FLOPs per sample a variant's step does (from :func:`flops_report`), for its MFU."""
    default = "default targets" in name or "kohya" in name
    unet = flops["ours"] if default else flops["attn"]
    if name.startswith("reference"):
        return unet + flops["vae"] + flops["te"]
    return unet + (flops["vae"] if "uncached" in name else 0.0)


def report_steps(variants: list[Variant], peaks: dict[str, float] | None = None,
                 flops: dict[str, float] | None = None) -> dict[str, Any]:
    """Print the medians table and the ratios; return them for RESULTS.md."""
    rows = {}
    print(f"\n{'variant':34} {'median s':>9} {'p10':>7} {'p90':>7} {'samples/s':>9}"
          + ("  peak GiB   MFU" if peaks is not None else "") + "  LoRA")
    for v in variants:
        med = statistics.median(v.times)
        p10, p90 = spread(v.times)  # inclusive: within the measured min..max, never extrapolated
        sps = v.samples / med
        line = f"{v.name:34} {med:9.3f} {p10:7.3f} {p90:7.3f} {sps:9.2f}"
        row: dict[str, Any] = {"median_s": med, "p10": p10, "p90": p90, "samples_per_s": sps, "n": len(v.times)}
        if peaks is not None and flops is not None:
            mfu = sps * step_flops(v.name, flops) / H100_BF16_PEAK
            line += f"  {peaks.get(v.name, float('nan')):8.2f}  {100 * mfu:4.1f}%"
            row.update(peak_gib=peaks.get(v.name), mfu=mfu)
        print(line + f"  {v.note}")
        rows[v.name] = row
    by = {v.name: v for v in variants}
    ratios = {}
    pairs = [("ours cached", "reference", 1.3), ("ours uncached", "reference", 1.0),
             ("ours cached, default targets", "reference, kohya targets", None),
             ("ours uncached, default targets", "reference, kohya targets", None),
             ("ours cached, default targets", "reference", None)]
    print()
    for ours, ref, budget in pairs:
        if ours in by and ref in by:
            point, lo, hi = ratio_ci(by[ref].times, by[ours].times)
            verdict = "" if budget is None else ("  PASS" if point >= budget else "  MISS") + f" (budget ≥ {budget})"
            print(f"{ours} vs {ref}: {point:.2f}× (95% CI {lo:.2f}–{hi:.2f}){verdict}")
            ratios[f"{ours} / {ref}"] = {"ratio": point, "ci": [lo, hi], "budget": budget}
    return {"rows": rows, "ratios": ratios}


# -- FLOPs on the meta device -------------------------------------------------------------------------


def _count(fn: Callable[[], Any]) -> tuple[float, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    return float(counter.get_total_flops()), out


def unet_train_flops(configs: dict[str, dict[str, Any]], latent: int, batch: int = 1, *,
                     lora: str | None = "ours", dim: int = 4) -> tuple[float, float]:
    """(forward, backward) FLOPs of one U-Net training step on the meta device.

    ``lora`` "ours": our ``LoRANetwork`` (sd-scripts targets), UNet-only, base frozen; "attn": ours
    limited to the four attention projections; None: no LoRA and every base weight trainable (a full
    fine-tune). The loss is the epsilon MSE; no gradient checkpointing.
    """
    from diffusers import UNet2DConditionModel

    from lora_tui.train.network.lora import LoRANetwork

    cfg = configs["unet"]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg)
        unet.requires_grad_(lora is None)
        if lora is not None:
            network = LoRANetwork(None, unet, dim=dim, alpha=float(dim), train_text_encoder=False)
            if lora == "attn":
                keep = tuple(f"_{t.replace('.', '_')}" for t in ATTN_TARGETS)
                names = {m.lora_name: dim for m in network.unet_loras if m.lora_name.endswith(keep)}
                network = LoRANetwork(None, unet, modules_dim=names, modules_alpha={n: float(dim) for n in names})
            network.apply_to()
        unet.train(False)
        noisy = torch.randn(batch, cfg["in_channels"], latent, latent)
        noise = torch.randn_like(noisy)
        timesteps = torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, 77, cfg["cross_attention_dim"])

        def forward() -> torch.Tensor:
            pred = unet(noisy, timesteps, states).sample
            return F.mse_loss(pred.float(), noise.float())

        fwd, loss = _count(forward)
        bwd, _ = _count(loss.backward)
    return fwd / batch, bwd / batch


def encoder_flops(configs: dict[str, dict[str, Any]], resolution: int) -> tuple[float, float]:
    """(VAE encode, text encoder) forward FLOPs per sample: what the reference adds every step."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        vae = AutoencoderKL(**configs["vae"]).requires_grad_(False)
        te = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])).requires_grad_(False)
        image = torch.randn(1, 3, resolution, resolution)
        ids = torch.zeros(1, 77, dtype=torch.long)
        v, _ = _count(lambda: vae.encode(image).latent_dist.mean)
        t, _ = _count(lambda: te(ids)[0])
    return v, t


def flops_report() -> dict[str, float]:
    """Part 2: FLOPs per sample on the full SD1.5 config, 512 px, printed and returned."""
    cfg = sd15_configs()
    out: dict[str, float] = {}
    f_ours, b_ours = unet_train_flops(cfg, 64, lora="ours")
    f_attn, b_attn = unet_train_flops(cfg, 64, lora="attn")
    f_full, b_full = unet_train_flops(cfg, 64, lora=None)
    f2_ours, b2_ours = unet_train_flops(cfg, 64, batch=2, lora="ours")
    vae, te = encoder_flops(cfg, 512)
    out.update(ours_fwd=f_ours, ours_bwd=b_ours, ours=f_ours + b_ours, ours_bs2=f2_ours + b2_ours,
               attn_fwd=f_attn, attn_bwd=b_attn, attn=f_attn + b_attn, full_fwd=f_full, full_bwd=b_full,
               full=f_full + b_full, vae=vae, te=te, reference=f_attn + b_attn + vae + te,
               ours_uncached=f_ours + b_ours + vae)
    t = 1e12
    print("\nFLOPs per sample, SD1.5 U-Net (meta device), 512 px (64×64 latents), text states (1,77,768), no GC")
    print(f"  ours cached step, LoRA r4 default targets : fwd {f_ours / t:.3f} + bwd {b_ours / t:.3f} = "
          f"{out['ours'] / t:.3f} TF (bwd/fwd {b_ours / f_ours:.2f}; bs 2: {out['ours_bs2'] / t:.3f} TF/sample)"
          f"  {'PASS' if out['ours'] <= 1.73e12 else 'MISS'} (budget ≤ 1.73)")
    print(f"  ours, LoRA r4 attention projections only  : fwd {f_attn / t:.3f} + bwd {b_attn / t:.3f} = "
          f"{out['attn'] / t:.3f} TF")
    print(f"  full fine-tune (all weights trainable)    : fwd {f_full / t:.3f} + bwd {b_full / t:.3f} = "
          f"{out['full'] / t:.3f} TF (3× fwd = {3 * f_full / t:.3f})")
    print(f"  VAE encode {vae / t:.3f} TF, CLIP-L {te / t:.4f} TF; reference step (VAE + TE + U-Net r4 attn) "
          f"{out['reference'] / t:.3f} TF; ours uncached {out['ours_uncached'] / t:.3f} TF")
    print(f"  saving vs full fine-tune: {1 - out['ours'] / out['full']:.1%}; FLOP-predicted cached ratio "
          f"reference/ours {out['reference'] / out['ours']:.2f}×")
    return out


def mini_flops(configs: dict[str, dict[str, Any]], resolution: int) -> dict[str, float]:
    """Per-sample FLOPs of the CPU model's parts, to read the measured ratios against."""
    latent = resolution // 8
    f_ours, b_ours = unet_train_flops(configs, latent, lora="ours")
    f_attn, b_attn = unet_train_flops(configs, latent, lora="attn")
    vae, te = encoder_flops(configs, resolution)
    return {"ours": f_ours + b_ours, "attn": f_attn + b_attn, "vae": vae, "te": te}


# -- runs ---------------------------------------------------------------------------------------------


def cpu_run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    configs = mini_configs(args.heads)
    spec = Spec(configs, resolution=256, batch=4, images=8, image_size=320)
    mf = mini_flops(configs, spec.resolution)
    g = 1e9
    print(f"CPU model (SD1.5 channels ÷8, {args.heads} head(s)), {spec.resolution} px, batch {spec.batch}, fp32, "
          f"{torch.get_num_threads()} threads; per sample: U-Net train (attn LoRA) {mf['attn'] / g:.2f} GF, "
          f"(default LoRA) {mf['ours'] / g:.2f} GF, VAE encode {mf['vae'] / g:.2f} GF, TE {mf['te'] / g:.3f} GF; "
          f"FLOP-predicted cached ratio {(mf['attn'] + mf['vae'] + mf['te']) / mf['attn']:.2f}×")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        model = write_model(work / "model", configs)
        accelerator = fresh_accelerator("no", cpu=True)
        variants = build_variants(spec, work, model, accelerator)
        print(f"{args.warmup} warm-up + {args.steps} timed rounds of {len(variants)} variants (interleaved)")
        interleave(variants, args.warmup, args.steps, accelerator.device)
        result = report_steps(variants)
    result["mini_flops"] = mf
    return result


def gpu_run(args: argparse.Namespace, flops: dict[str, float]) -> dict[str, Any]:
    """Part 3: real SD1.5 architecture, random bf16-stored weights, 512 px, bf16 autocast, on CUDA."""
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda")
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(device)}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        model = write_model(work / "model", sd15_configs(), device="cuda", dtype=torch.bfloat16)
        torch.cuda.empty_cache()
        for batch in args.gpu_batches:
            spec = Spec(sd15_configs(), resolution=512, batch=batch, images=2 * batch, image_size=576,
                        device="cuda", mixed_precision="bf16")
            accelerator = fresh_accelerator("bf16", cpu=False)
            variants = build_variants(spec, work / f"bs{batch}", model, accelerator)
            peaks = {}
            for v in variants:  # peak memory of one step each, others' weights included
                v.step()
                _sync(device)
                torch.cuda.reset_peak_memory_stats(device)
                v.step()
                _sync(device)
                peaks[v.name] = torch.cuda.max_memory_allocated(device) / 2**30
            print(f"\nGPU {results['device']}, SD1.5 random weights, 512 px, bf16, batch {batch} "
                  f"(peak = all loaded loops' weights + this loop's step)")
            interleave(variants, args.warmup, args.steps, device)
            results[f"bs{batch}"] = report_steps(variants, peaks, flops)
            del variants, accelerator  # the prepared U-Nets live in the accelerator too
            gc.collect()
            torch.cuda.empty_cache()
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 warm-up + 5 timed rounds (about 2 min on 2 cores)")
    ap.add_argument("--steps", type=int, default=15, help="timed rounds (every variant once per round)")
    ap.add_argument("--warmup", type=int, default=3, help="rounds discarded first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1, help="attention heads per block of the CPU model")
    ap.add_argument("--gpu", action="store_true", help="also run the SD1.5/bf16 comparison on CUDA")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--sdxl", action="store_true", help="the SDXL comparison instead (bench/bench_train_sdxl.py)")
    ap.add_argument("--sdxl-resolution", type=int, default=128, help="training resolution of the SDXL comparison")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 5, 2
    if args.sdxl:
        from bench.bench_train_sdxl import sdxl_cpu_run

        result = sdxl_cpu_run(args)
        if args.json:
            args.json.write_text(json.dumps({"sdxl_cpu": result}, indent=2, default=str), encoding="utf-8")
        return
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    print(f"{datetime.date.today()} {platform.processor() or platform.machine()} torch {torch.__version__} "
          f"python {platform.python_version()}")
    out: dict[str, Any] = {}
    if not args.no_cpu:
        out["cpu"] = cpu_run(args)
    out["flops"] = flops_report()
    if args.gpu:
        out["gpu"] = gpu_run(args, out["flops"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


with contextlib.suppress(ImportError):  # quiet the libraries' progress bars like the trainer does
    import lora_tui.train.model.load  # noqa: F401

if __name__ == "__main__":
    main()

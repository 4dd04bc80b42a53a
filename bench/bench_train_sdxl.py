"""SDXL mode of the training-step bench (``bench/bench_train.py --sdxl``; issue 13's CPU budget).

    .venv/bin/python bench/bench_train.py --sdxl [--quick] [--steps N] [--warmup N] [--sdxl-resolution PX]

Steady-state step time on the CPU, fp32, one process, interleaved rounds (every variant once per round,
order rotated), warm-up rounds discarded, medians with a bootstrap interval — bench_train.py's method.

The model is SDXL 1.0's topology with every width divided by 8 and everything else kept: U-Net levels
40/80/160 with SDXL's 0/1/2/10 transformer layers per level (no attention at the first), 2 layers per
block, linear projections, the `text_time` added embedding (bigG's pooled projection + six 256-wide
size embeddings); CLIP-L 96 wide × 12 layers and bigG 160 wide × 32 layers (cross-attention 256);
the SDXL VAE (16/32/64/64, scaling 0.13025). One attention head per block, as bench_train.py's SD1.5
model (keeps real head widths instead of 8-wide heads no model has).

"reference" does what diffusers' ``examples/text_to_image/train_text_to_image_lora_sdxl.py`` does each
step (written here from its structure, no code copied): the dataset transform (resize the shorter
side, centre crop, record original size and crop top-left, normalise) and both tokenizers; VAE encode;
noise, uniform timesteps, ``add_noise``; ``compute_time_ids`` per sample; ``encode_prompt`` through both
text encoders (penultimate hidden states concatenated, bigG's pooled output); the U-Net with
``added_cond_kwargs``; epsilon MSE; backward; ``clip_grad_norm_`` 1.0; AdamW; constant LR. PEFT LoRA
r4/α4 on ``to_q/to_k/to_v/to_out.0`` via ``unet.add_adapter``, U-Net only (the script's default).

"ours cached" is the real trainer (a project on disk, ``parse_args`` → ``build_dataset`` →
``setup.prepare`` → ``Trainer._epochs``' optimizer step, via bench_train's ``Ours``) with cached
latents and cached text-encoder outputs, U-Net only, its LoRA limited to the same four attention
projections through ``--network_weights`` + ``--dim_from_weights``. Budget: ≥ 1.3× the reference.
"reference, precomputed" feeds the reference loop latents and text embeddings computed once, so the
part of the ratio that is not caching shows (no budget on it).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.bench_train import (
    ATTN_TARGETS,
    Ours,
    Variant,
    fresh_accelerator,
    ratio_ci,
    write_attention_lora,
    write_images,
    write_project,
)
from bench.stats import spread

SDXL_CONFIGS = Path(__file__).resolve().parents[1] / "lora_tui" / "train" / "model" / "model_configs" / "sdxl"


def sdxl_mini_configs() -> dict[str, dict[str, Any]]:
    """SDXL 1.0 base's configs with widths ÷8 (see the module docstring)."""
    from lora_tui.train.model.tiny import tokenizer_vocab

    def load(name: str) -> dict[str, Any]:
        cfg = json.loads((SDXL_CONFIGS / name / "config.json").read_text("utf-8"))
        return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype")}

    unet = {**load("unet"), "block_out_channels": [40, 80, 160], "norm_num_groups": 4, "attention_head_dim": 1,
            "cross_attention_dim": 96 + 160, "projection_class_embeddings_input_dim": 160 + 6 * 256,
            "sample_size": 32}
    vae = {**load("vae"), "block_out_channels": [16, 32, 64, 64], "norm_num_groups": 4, "sample_size": 256}
    vocab = len(tokenizer_vocab())
    ids = {"vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}
    te1 = {**load("text_encoder"), **ids, "hidden_size": 96, "intermediate_size": 384, "projection_dim": 96}
    te2 = {**load("text_encoder_2"), **ids, "hidden_size": 160, "intermediate_size": 640, "projection_dim": 160}
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2}


def write_sdxl_model(dest: Path, configs: dict[str, dict[str, Any]], seed: int = 0) -> Path:
    """A Diffusers SDXL folder (random weights) both loops load from."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lora_tui.train.model import tiny_sdxl

    torch.manual_seed(seed)
    modules = {"unet": UNet2DConditionModel(**configs["unet"]), "vae": AutoencoderKL(**configs["vae"]),
               "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])),
               "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))}
    tiny_sdxl._write_diffusers(dest, {k: m.eval() for k, m in modules.items()})
    (dest / "scheduler").mkdir(exist_ok=True)
    (dest / "scheduler" / "scheduler_config.json").write_text(json.dumps(tiny_sdxl.scheduler_config()))
    (dest / "model_index.json").write_text(json.dumps(tiny_sdxl.model_index()), encoding="utf-8")
    return dest


class SdxlReference:
    """train_text_to_image_lora_sdxl.py's per-step work (see the module docstring)."""

    def __init__(self, model: Path, images: list[Path], batch: int, resolution: int, accelerator: Any, *,
                 precomputed: bool = False) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from peft import LoraConfig
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        self.accelerator = accelerator
        self.tokenizers = [CLIPTokenizer.from_pretrained(str(model), subfolder=s) for s in ("tokenizer", "tokenizer_2")]
        self.text_encoders = [CLIPTextModel.from_pretrained(str(model), subfolder="text_encoder"),
                              CLIPTextModelWithProjection.from_pretrained(str(model), subfolder="text_encoder_2")]
        self.vae = AutoencoderKL.from_pretrained(str(model), subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="unet")
        self.noise_scheduler = DDPMScheduler.from_pretrained(str(model), subfolder="scheduler")
        for module in (unet, self.vae, *self.text_encoders):
            module.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=ATTN_TARGETS))
        self.lora_layers = [p for p in unet.parameters() if p.requires_grad]
        self.adapters = sum(1 for n, _ in unet.named_modules() if n.endswith(".lora_A"))
        self.params = sum(p.numel() for p in self.lora_layers)
        optimizer = torch.optim.AdamW(self.lora_layers, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=100_000)
        self.unet, self.optimizer, self.lr_scheduler = accelerator.prepare(unet, optimizer, scheduler)
        self.unet.train()
        self.images = images
        self.captions = [p.with_suffix(".txt").read_text("utf-8").strip() for p in images]
        self.batch_size, self.resolution, self.count = batch, resolution, 0
        self.cache: dict[int, tuple[torch.Tensor, ...]] = {}
        if precomputed:
            with torch.no_grad():
                for i in range(len(images)):
                    self.cache[i] = self._inputs([i])

    def _pixels(self, path: Path) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Resize the shorter side (bilinear), centre crop; (tensor, original (h, w), crop (top, left))."""
        import numpy as np
        from PIL import Image

        res = self.resolution
        image = Image.open(path).convert("RGB")
        original = (image.height, image.width)
        scale = res / min(image.size)
        image = image.resize((max(res, round(image.width * scale)), max(res, round(image.height * scale))),
                             Image.BILINEAR)
        top, left = max(0, round((image.height - res) / 2.0)), max(0, round((image.width - res) / 2.0))
        image = image.crop((left, top, left + res, top + res))
        tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (tensor - 0.5) / 0.5, original, (top, left)

    def _inputs(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """(latents, prompt_embeds, pooled, time_ids) for images `idx`, as the script computes them."""
        device = self.accelerator.device
        pixels, ids = [], []
        for i in idx:
            tensor, original, crop = self._pixels(self.images[i])
            pixels.append(tensor)
            ids.append(torch.tensor([list(original + crop + (self.resolution, self.resolution))]))
        batch = torch.stack(pixels).to(device, memory_format=torch.contiguous_format).float()
        latents = self.vae.encode(batch).latent_dist.sample() * self.vae.config.scaling_factor
        embeds, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            tokens = tokenizer([self.captions[i] for i in idx], padding="max_length", truncation=True,
                               max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
            out = encoder(tokens.to(device), output_hidden_states=True, return_dict=False)
            pooled = out[0]
            embeds.append(out[-1][-2])
        assert pooled is not None
        return latents, torch.cat(embeds, dim=-1), pooled, torch.cat(ids).to(device)

    def step(self) -> float:
        acc = self.accelerator
        n = len(self.images)
        idx = [(self.count * self.batch_size + i) % n for i in range(self.batch_size)]
        with acc.accumulate(self.unet):
            if self.cache:
                parts = [self.cache[i] for i in idx]
                latents, embeds, pooled, time_ids = (torch.cat([p[k] for p in parts]) for k in range(4))
            else:
                latents, embeds, pooled, time_ids = self._inputs(idx)
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                      device=latents.device).long()
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
            pred = self.unet(noisy, timesteps, embeds, added_cond_kwargs={"time_ids": time_ids, "text_embeds": pooled},
                             return_dict=False)[0]
            loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
            train_loss = acc.gather(loss.repeat(self.batch_size)).mean().item()
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(self.lora_layers, 1.0)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad()
        self.count += 1
        return train_loss


def build_sdxl_variants(work: Path, model: Path, accelerator: Any, *, resolution: int, batch: int, images: int,
                        image_size: int) -> list[Variant]:
    paths = write_images(work / "reference", images, image_size)
    variants = []
    for name, pre in (("reference", False), ("reference, precomputed", True)):
        ref = SdxlReference(model, paths, batch, resolution, accelerator, precomputed=pre)
        variants.append(Variant(name, ref.step, batch, note=f"{ref.adapters} adapters, {ref.params:,} params"))
    attn = write_attention_lora(work / "attention_lora.safetensors", model)
    training = {"cache_latents": True, "cache_text_encoder_outputs": True, "network_weights": str(attn),
                "dim_from_weights": True, "mixed_precision": "no"}
    argv = write_project(work / "ours", model, images, image_size, resolution, batch, training)
    ours = Ours(argv, accelerator, work / "ours")
    variants.append(Variant("ours cached", ours.step, batch, note=f"{ours.adapters} adapters, {ours.params:,} params"))
    return variants


def sdxl_cpu_run(args: Any) -> dict[str, Any]:
    """The SDXL comparison; prints the table and returns the figures."""
    torch.set_num_threads(args.threads)
    configs = sdxl_mini_configs()
    resolution, batch = args.sdxl_resolution, 2
    print(f"CPU model (SDXL 1.0 topology, widths ÷8), {resolution} px, batch {batch}, fp32, "
          f"{torch.get_num_threads()} threads; cached latents and text-encoder outputs for ours")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        model = write_sdxl_model(work / "model", configs)
        accelerator = fresh_accelerator("no", cpu=True)
        variants = build_sdxl_variants(work, model, accelerator, resolution=resolution, batch=batch, images=4,
                                       image_size=resolution + resolution // 4)
        print(f"{args.warmup} warm-up + {args.steps} timed rounds of {len(variants)} variants (interleaved)")
        cpu = interleave_cpu(variants, args.warmup, args.steps)
    rows: dict[str, Any] = {}
    print(f"\n{'variant':26} {'median s':>9} {'p10':>7} {'p90':>7} {'CPU s':>7} {'samples/s':>9}  LoRA")
    for v in variants:
        med, cpu_med = statistics.median(v.times), statistics.median(cpu[v.name])
        p10, p90 = spread(v.times)
        rows[v.name] = {"median_s": med, "p10": p10, "p90": p90, "cpu_s": cpu_med, "samples_per_s": v.samples / med,
                        "n": len(v.times)}
        print(f"{v.name:26} {med:9.3f} {p10:7.3f} {p90:7.3f} {cpu_med:7.3f} {v.samples / med:9.2f}  {v.note}")
    by = {v.name: v for v in variants}
    ratios = {}
    for ref, budget in (("reference", 1.3), ("reference, precomputed", None)):
        for what, ref_t, ours_t in (("wall", by[ref].times, by["ours cached"].times),
                                    ("CPU", cpu[ref], cpu["ours cached"])):
            point, lo, hi = ratio_ci(ref_t, ours_t)
            verdict = "" if budget is None else (" meets" if lo >= budget else " MISSES" if hi < budget else
                                                 " inconclusive vs") + f" the {budget}× budget"
            print(f"ours cached vs {ref} ({what} time): {point:.2f}× (95% CI {lo:.2f}–{hi:.2f}){verdict}")
            ratios[f"ours cached / {ref} ({what})"] = {"ratio": point, "ci": [lo, hi], "budget": budget}
    return {"rows": rows, "ratios": ratios}


def interleave_cpu(variants: list[Variant], warmup: int, steps: int) -> dict[str, list[float]]:
    """bench_train.interleave's rounds, also recording each step's process CPU time: on a shared,
    loaded machine the wall time swings with the neighbours, the CPU time much less."""
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(warmup + steps):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            t0, c0 = time.perf_counter(), time.process_time()
            v.step()
            if r >= warmup:
                v.times.append(time.perf_counter() - t0)
                cpu[v.name].append(time.process_time() - c0)
    return cpu

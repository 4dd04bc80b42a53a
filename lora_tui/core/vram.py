"""Peak training VRAM for the planned settings, and the knob that brings it under the card's free memory.

`lora-tui doctor` answers "will this fit?" before a run is launched on a remote 24 GB card, where
an out-of-memory crash costs the model load, the latent caching and the user's trust. Plain Python
(no torch): every number below is data, measured once with `train/diagnostics/vram_measure.py` on
the meta device (no memory, no GPU) and re-measured by tests/train/test_vram_measure.py so the table
cannot drift from the shipped configs.

The estimate is a sum of parts, each as sd-scripts places it on the GPU:

* weights: the frozen U-Net, text encoder(s) and VAE in the weight dtype (fp16/bf16 under mixed
  precision, else fp32; the VAE in fp32 with `no_half_vae`). Cached latents move the VAE to the CPU
  after caching; cached text-encoder outputs (SDXL) move the text encoders there. Plus the LoRA's own
  parameters (fp32, or half with full_fp16/full_bf16), counted per rank (`LORA_PARAMS_PER_RANK`).
* optimizer: the LoRA's gradients plus the optimizer's state (`OPTIMIZER_STATE_BYTES` per parameter:
  AdamW keeps two fp32 moments, 8 bytes; AdamW8bit two 8-bit ones; Prodigy four tensors).
* activations: what one step keeps alive, measured as the peak bytes of a U-Net LoRA training step
  (forward, loss, backward) on the meta device with a dispatch-mode allocation tracker, with flash
  attention (what a GPU keeps; the meta device's math fallback would keep the score matrices) and,
  for mixed precision, bf16 weights, the fp32 LoRA and CUDA autocast's casts modelled at the
  functional level (autocast itself does nothing on the meta device). Per sample it is a constant
  plus bytes per latent pixel (`Activations`), exactly linear in the batch; with and without
  gradient checkpointing, mixed precision and fp32; plus what conv_dim adds. A trained text encoder
  adds its own per-sample bytes; uncached latents add the VAE encode, which runs before the U-Net,
  so the larger of the two counts.
* a fixed CUDA context (`CUDA_CONTEXT_BYTES`, an assumption: 0.3–0.6 GB on current drivers).

Unverified on a GPU: no GPU was lent to the task that wrote this. Known gaps: autocast is modelled,
not run (GroupNorm/LayerNorm in fp32, Linear/Conv2d in half); the caching allocator rounds and
fragments; cuDNN/cuBLAS workspaces and xformers kernels keep their own extras. Treat the figure as a
lower bound with a GB or two of slack; `bench/RESULTS.md` says how to check it on a card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

GIB = 1024**3
ASSUMED_CARD_BYTES = 24 * GIB  # the card the users have, when there is no GPU to ask
CUDA_CONTEXT_BYTES = int(0.5 * GIB)

# Parameters per unit of rank, and adapter count, per part of sd-scripts' networks.lora, measured from
# the configs in model_configs/ with LoRANetwork on meta-device models (tests/train/test_doctor.py
# recomputes them). `unet_resnet` are the Linear / 1×1 layers inside ResnetBlock2D that get
# network_dim once conv_dim is set; `unet_conv3x3` the 3×3 convolutions that get conv_dim.
LORA_PARAMS_PER_RANK: dict[str, dict[str, tuple[int, int]]] = {
    "sd_v1": {"text_encoder": (165_888, 72), "unet": (423_936, 192), "unet_resnet": (82_880, 36),
              "unet_conv3x3": (544_000, 50)},
    "sd_v2": {"text_encoder": (423_936, 138), "unet": (432_128, 192), "unet_resnet": (82_880, 36),
              "unet_conv3x3": (544_000, 50)},
    # both text encoders (CLIP-L 72 + OpenCLIP bigG 192 = sd-scripts' 264) and sd-scripts' 722 U-Net modules
    "sdxl": {"text_encoder": (903_168, 264), "unet": (2_659_840, 722), "unet_resnet": (58_560, 28),
             "unet_conv3x3": (355_840, 38)},
}


@dataclass(frozen=True)
class Activations:
    """What one U-Net LoRA step keeps alive per sample: a constant plus bytes per latent pixel."""

    per_sample: int
    per_latent_px: int

    def bytes(self, latent_px: int) -> int:
        return self.per_sample + self.per_latent_px * latent_px


@dataclass(frozen=True)
class FamilyMemory:
    """Measured facts of one model family (see the module docstring and vram_measure.py)."""

    unet_params: int
    vae_params: int
    text_encoder_params: int  # SDXL: both encoders
    mixed: Activations  # bf16 weights, fp32 LoRA, autocast's casts; no gradient checkpointing
    mixed_gc: Activations  # the same with gradient checkpointing
    fp32: Activations
    fp32_gc: Activations
    conv_per_latent_px: int  # what conv_dim adds (LoRA on the ResnetBlock2D convolutions), mixed precision
    te_act_per_sample: int  # a trained text encoder's forward + backward, bf16, 77 tokens
    vae_encode_per_px: int  # encoding an image without gradients, bf16, bytes per image pixel


# measured with vram_measure on 2026-12-02 (torch 2.13.0 CPU build, meta device; mixed-precision lines
# re-measured after the adapter left its input's cast to autocast and fused its up-projection in addmm):
# parameter counts of the shipped configs; activations of a rank-16 UNet-only LoRA step at batch 1 fitted
# through 64×64 and 128×128 latents (a third size, 96×96, is within 3 % of the line, with checkpointing up
# to 7 % below it: tests/train/test_vram_measure.py); batch × the batch-1 figure is exact in fp32, ≤ 2 % high mixed;
# conv_dim's extra at 64², rank 8; text encoder and VAE in bf16 (fp32 runs: twice).
FAMILIES: dict[str, FamilyMemory] = {
    "sd_v1": FamilyMemory(859_520_964, 83_653_863, 123_060_480,
                          mixed=Activations(17_200_000, 305_412), mixed_gc=Activations(2_100_000, 72_269),
                          fp32=Activations(7_900_000, 470_421), fp32_gc=Activations(300_000, 129_250),
                          conv_per_latent_px=23_800, te_act_per_sample=29_100_000, vae_encode_per_px=1280),
    "sd_v2": FamilyMemory(865_910_724, 83_653_863, 340_387_840,
                          mixed=Activations(17_200_000, 300_343), mixed_gc=Activations(2_100_000, 67_245),
                          fp32=Activations(7_900_000, 470_353), fp32_gc=Activations(300_000, 129_226),
                          conv_per_latent_px=23_100, te_act_per_sample=59_800_000, vae_encode_per_px=1280),
    "sdxl": FamilyMemory(2_567_463_684, 83_653_863, 817_720_320,
                         mixed=Activations(104_100_000, 514_022), mixed_gc=Activations(48_000_000, 46_390),
                         fp32=Activations(52_000_000, 827_718), fp32_gc=Activations(500_000, 81_306),
                         conv_per_latent_px=31_100, te_act_per_sample=129_500_000, vae_encode_per_px=1280),
}

# bytes of optimizer state per trainable parameter (fp32 states; sd-scripts' optimizer_type names)
OPTIMIZER_STATE_BYTES: dict[str, float] = {
    "adamw": 8, "adam": 8, "pagedadamw": 8, "pagedadamw32bit": 8, "adamwschedulefree": 8, "radamschedulefree": 8,
    "adamw8bit": 2, "pagedadamw8bit": 2, "lion": 4, "lion8bit": 1, "pagedlion8bit": 1, "sgdnesterov": 4,
    "sgdnesterov8bit": 1, "sgdschedulefree": 4, "adafactor": 1,  # factored second moment, no first moment
    "prodigy": 16, "dadaptation": 12, "dadaptadam": 12, "dadaptadagrad": 8, "dadaptadan": 16, "dadaptlion": 8,
    "dadaptsgd": 4, "dadaptadanip": 16,
}
EIGHT_BIT = {"adamw": "AdamW8bit", "adam": "AdamW8bit", "lion": "Lion8bit", "sgdnesterov": "SGDNesterov8bit"}


@dataclass(frozen=True)
class Plan:
    """The settings that decide the memory of a LoRA run (sd-scripts' option names)."""

    family: str  # sd_v1 | sd_v2 | sdxl
    batch: int = 1
    width: int = 512  # the largest bucket, in pixels
    height: int = 512
    mixed_precision: str = "no"  # no | fp16 | bf16
    full_half: bool = False  # full_fp16 / full_bf16: the LoRA and its optimizer state in half too
    no_half_vae: bool = False
    dim: int = 4
    conv_dim: int | None = None
    train_unet: bool = True
    train_text_encoder: bool = True
    cache_text_encoder_outputs: bool = False  # SDXL: text encoders leave the GPU
    cache_latents: bool = False  # the VAE leaves the GPU
    gradient_checkpointing: bool = False
    optimizer: str = "AdamW"


@dataclass(frozen=True)
class Estimate:
    weights: int
    optimizer: int
    activations: int
    context: int = CUDA_CONTEXT_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations + self.context

    def text(self) -> str:
        """The doctor's words: ``estimated peak VRAM 14.2 GiB (weights 5.1, optimizer 0.7, …)``."""
        return (f"estimated peak VRAM {gib(self.total)} (weights {self.weights / GIB:.1f}, optimizer "
                f"{self.optimizer / GIB:.1f}, activations {self.activations / GIB:.1f}, CUDA context "
                f"{self.context / GIB:.1f})")


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _default(name: str) -> Any:
    """An option's effective default, from the one settings table (core.train_settings)."""
    from lora_tui.core.train_settings import SETTINGS

    return SETTINGS[name].default


def optimizer_state_bytes(name: str) -> tuple[float, bool]:
    """(state bytes per parameter, known) for an sd-scripts optimizer_type; unknown: Adam-like 8."""
    key = str(name or _default("optimizer_type")).rsplit(".", 1)[-1].lower()  # "" means AdamW to sd-scripts
    if key in OPTIMIZER_STATE_BYTES:
        return OPTIMIZER_STATE_BYTES[key], True
    return (2 if "8bit" in key else 8), False


def lora_params(plan: Plan) -> int:
    """Trainable LoRA parameters: rank × the per-rank counts of the parts it trains."""
    table = LORA_PARAMS_PER_RANK[plan.family]
    total = table["text_encoder"][0] * plan.dim if plan.train_text_encoder else 0
    if plan.train_unet:
        total += table["unet"][0] * plan.dim
        if plan.conv_dim:
            total += table["unet_resnet"][0] * plan.dim + table["unet_conv3x3"][0] * plan.conv_dim
    return total


def estimate(plan: Plan) -> Estimate:
    """Peak VRAM of one training step of `plan` (see the module docstring for what each part holds)."""
    fam = FAMILIES[plan.family]
    half = plan.mixed_precision in ("fp16", "bf16")
    weight_bytes = 2 if half else 4
    te_on_gpu = plan.train_text_encoder or not (plan.family == "sdxl" and plan.cache_text_encoder_outputs)
    weights = fam.unet_params * weight_bytes
    weights += fam.text_encoder_params * weight_bytes if te_on_gpu else 0
    weights += 0 if plan.cache_latents else fam.vae_params * (4 if plan.no_half_vae or not half else 2)
    n_lora = lora_params(plan)
    lora_bytes = 2 if plan.full_half and half else 4
    weights += n_lora * lora_bytes
    state, _ = optimizer_state_bytes(plan.optimizer)
    if "8bit" not in plan.optimizer.lower():
        state = state * lora_bytes / 4  # states follow the parameters' dtype
    optimizer = int(n_lora * (lora_bytes + state))
    act_scale = 1 if half else 2  # text encoder and VAE are measured in bf16
    latent_px = (plan.width // 8) * (plan.height // 8)
    if half:
        unet_act = fam.mixed_gc if plan.gradient_checkpointing else fam.mixed
    else:
        unet_act = fam.fp32_gc if plan.gradient_checkpointing else fam.fp32
    per_sample = unet_act.bytes(latent_px) if plan.train_unet else 0
    if plan.conv_dim and plan.train_unet:
        per_sample += fam.conv_per_latent_px * latent_px
    if plan.train_text_encoder:
        per_sample += fam.te_act_per_sample * act_scale
    step = plan.batch * per_sample
    encode = 0 if plan.cache_latents else plan.batch * plan.width * plan.height * fam.vae_encode_per_px * (
        2 if plan.no_half_vae or not half else 1)
    return Estimate(weights=int(weights), optimizer=optimizer, activations=int(max(step, encode)))


# ------------------------------------------------------------------------------------------- advice
@dataclass(frozen=True)
class Knob:
    """A change to the plan, and the words that tell the user how to make it."""

    setting: str
    plan: Plan
    costly: bool = False  # changes what is learned (batch, resolution): only when nothing else does it


def _first(count: int, ok: Any) -> int | None:
    """The smallest i in range(count) with ok(i), for an ok that stays true once true (a smaller batch
    or resolution only lowers the estimate); found by halving, so a batch of 10**9 typed by mistake
    costs some thirty estimates, not a billion."""
    lo, hi = 0, count  # ok(hi) is taken as true; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < count else None


def knobs(plan: Plan, fits: Any = None) -> list[Knob]:
    """The changes that lower memory, in order of least quality cost (gradient checkpointing first).

    Batch and resolution come last: they change what is learned. `fits(plan)` picks the largest
    batch / resolution that fits when given."""
    out = []
    if not plan.gradient_checkpointing:
        out.append(Knob("gradient_checkpointing = true", replace(plan, gradient_checkpointing=True)))
    if plan.mixed_precision == "no":
        out.append(Knob('mixed_precision = "bf16" (or "fp16" before RTX 30xx)', replace(plan, mixed_precision="bf16")))
    if plan.family == "sdxl" and not plan.cache_text_encoder_outputs and plan.train_unet:
        setting = "cache_text_encoder_outputs = true" + (
            "" if not plan.train_text_encoder else " with network_train_unet_only = true (the text encoders are "
            "not trained)")
        out.append(Knob(setting, replace(plan, cache_text_encoder_outputs=True, train_text_encoder=False)))
    if not plan.cache_latents:
        out.append(Knob("cache_latents = true (no color_aug / random_crop)", replace(plan, cache_latents=True)))
    key = plan.optimizer.rsplit(".", 1)[-1].lower()
    if key in EIGHT_BIT:
        name = EIGHT_BIT[key]
        out.append(Knob(f'optimizer_type = "{name}" (needs bitsandbytes)', replace(plan, optimizer=name)))
    if plan.batch > 1:
        batch = _first(plan.batch - 1, lambda i: bool(fits and fits(replace(plan, batch=plan.batch - 1 - i))))
        batch = plan.batch - 1 - batch if batch is not None else 1
        out.append(Knob(f"train_batch_size = {batch}", replace(plan, batch=batch), costly=True))
    side = max(plan.width, plan.height)

    def scaled(i: int) -> Plan:  # the i-th resolution down from `side`, in steps of 64
        reso = side - 64 * (i + 1)
        return replace(plan, width=max(64, plan.width * reso // side // 64 * 64),
                       height=max(64, plan.height * reso // side // 64 * 64))

    steps = len(range(side - 64, 255, -64))
    first = _first(steps, lambda i: side - 64 * (i + 1) <= 256 or bool(fits and fits(scaled(i))))
    if first is not None:
        reso, smaller = side - 64 * (first + 1), scaled(first)
        out.append(Knob(f"resolution = {reso} (largest bucket {smaller.width}×{smaller.height})", smaller,
                        costly=True))
    return out


def advice(plan: Plan, free: int) -> tuple[list[str], Estimate] | None:
    """None when `plan` fits in `free` bytes; else the settings to change and the estimate after them.

    The first single knob (in `knobs`' order) that brings the estimate under wins, batch and
    resolution excepted; when none does alone, knobs are added in order until it fits (or every knob
    is spent), so batch and resolution are lowered only after every other knob."""
    def fits(p: Plan) -> bool:
        return estimate(p).total <= free

    if fits(plan):
        return None
    for knob in knobs(plan, fits):
        if not knob.costly and fits(knob.plan):
            return [knob.setting], estimate(knob.plan)
    settings: list[str] = []
    current = plan
    while not fits(current):
        remaining = knobs(current, fits)  # a knob once applied leaves the list
        if not remaining:
            break
        settings.append(remaining[0].setting)
        current = remaining[0].plan
    return settings, estimate(current)


# ------------------------------------------------------------------------------------------- project
def network_arg(training: Mapping[str, Any], key: str) -> str | None:
    """One `key=value` of `[training] network_args` (sd-scripts' list form), so conv_dim counts where set."""
    for item in training.get("network_args") or []:
        name, _, value = str(item).partition("=")
        if name.strip() == key:
            return value.strip()
    return None


def plan_from_settings(family: str, training: Mapping[str, Any], *, batch: int, width: int, height: int) -> Plan:
    """A Plan from the project's [training] values (unset: the trainer's effective defaults)."""
    from lora_tui.core.train_settings import effective

    def flag(name: str) -> bool:
        return bool(effective(training, name))

    conv = network_arg(training, "conv_dim")
    try:
        conv_dim = int(float(conv)) if conv else None
    except ValueError:
        conv_dim = None
    cache_te = flag("cache_text_encoder_outputs") or flag("cache_text_encoder_outputs_to_disk")
    unet_only = flag("network_train_unet_only")
    return Plan(family=family, batch=max(1, batch), width=width, height=height,
                mixed_precision=str(effective(training, "mixed_precision") or _default("mixed_precision")),
                full_half=flag("full_fp16") or flag("full_bf16"),
                no_half_vae=flag("no_half_vae") or (family == "sdxl" and training.get("no_half_vae") is None),
                dim=int(effective(training, "network_dim")), conv_dim=conv_dim or None,
                train_unet=not flag("network_train_text_encoder_only"),
                train_text_encoder=not unet_only and not cache_te,
                cache_text_encoder_outputs=cache_te,
                cache_latents=flag("cache_latents") or flag("cache_latents_to_disk"),
                gradient_checkpointing=flag("gradient_checkpointing"),
                optimizer=str(effective(training, "optimizer_type") or _default("optimizer_type")))

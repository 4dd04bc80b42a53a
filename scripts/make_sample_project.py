"""Regenerate sample_project/: a small synthetic project drawn with Pillow (no third-party images).

    python scripts/make_sample_project.py [DEST]

Deterministic: the same files every run, so the committed copy can be checked against it.
Subsets:
  data/mira/      a character, trained with class tokens and no captions (12 images, mixed aspect)
  data/armsup/    a pose concept with captions and the trigger word "armsup pose", flip_aug on (14 images)
  reg/woman/      regularization images of the class (6 images)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZES = [(512, 512), (512, 768), (768, 512), (640, 640), (576, 832)]
BACKGROUNDS = {"blue background": (70, 110, 200), "green background": (70, 160, 90),
               "grey background": (150, 150, 150), "sunset background": (230, 140, 80),
               "night background": (30, 30, 60)}
SHIRTS = {"red shirt": (200, 40, 40), "yellow shirt": (230, 200, 40), "white shirt": (240, 240, 240),
          "purple shirt": (120, 60, 170)}


def figure(draw: ImageDraw.ImageDraw, cx: float, cy: float, scale: float, *, hair: tuple[int, int, int],
           body: tuple[int, int, int], arms_up: bool) -> None:
    """A simple person: head, hair, torso, arms (up or down) and legs."""
    s = scale
    draw.ellipse([cx - 28 * s, cy - 120 * s, cx + 28 * s, cy - 64 * s], fill=(240, 200, 170))
    draw.pieslice([cx - 32 * s, cy - 126 * s, cx + 32 * s, cy - 70 * s], 180, 360, fill=hair)
    draw.rectangle([cx - 30 * s, cy - 62 * s, cx + 30 * s, cy + 30 * s], fill=body)
    arm = (240, 200, 170)
    if arms_up:
        draw.line([cx - 28 * s, cy - 55 * s, cx - 60 * s, cy - 130 * s], fill=arm, width=int(10 * s))
        draw.line([cx + 28 * s, cy - 55 * s, cx + 60 * s, cy - 130 * s], fill=arm, width=int(10 * s))
    else:
        draw.line([cx - 30 * s, cy - 55 * s, cx - 45 * s, cy + 20 * s], fill=arm, width=int(10 * s))
        draw.line([cx + 30 * s, cy - 55 * s, cx + 45 * s, cy + 20 * s], fill=arm, width=int(10 * s))
    draw.line([cx - 15 * s, cy + 30 * s, cx - 20 * s, cy + 110 * s], fill=(50, 50, 70), width=int(12 * s))
    draw.line([cx + 15 * s, cy + 30 * s, cx + 20 * s, cy + 110 * s], fill=(50, 50, 70), width=int(12 * s))


def scene(rng: random.Random, size: tuple[int, int], bg: tuple[int, int, int], *, hair: tuple[int, int, int],
          body: tuple[int, int, int], arms_up: bool) -> Image.Image:
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(6):  # a little scenery so no two images are identical
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(10, 60)
        tone = tuple(min(255, c + rng.randrange(-40, 40)) for c in bg)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)
    scale = min(w, h) / 320 * rng.uniform(0.8, 1.1)
    figure(draw, w / 2 + rng.uniform(-0.15, 0.15) * w, h * 0.55, scale, hair=hair, body=body, arms_up=arms_up)
    return img


PROJECT_TOML = '''# lora-tui sample project: synthetic images drawn by scripts/make_sample_project.py.
# [general] / [[datasets]] / [[datasets.subsets]] use kohya-ss/sd-scripts dataset-config keys;
# [model] and [training] use train_network.py flag names. Paths are relative to this folder.

[project]
name = "sample"
backend = "builtin"                     # "builtin" (lora-tui's trainer) or "sd-scripts"
# sd_scripts_dir = "~/sd-scripts"       # your kohya-ss/sd-scripts checkout (backend = "sd-scripts")

[model]
pretrained_model_name_or_path = "lora-tui:tiny-sd15"   # a tiny random model lora-tui builds on first use: it
                                        # trains the loop, not a useful LoRA. Set your .safetensors/.ckpt
                                        # file or Diffusers folder here for real training.

[general]
caption_extension = ".txt"              # sd-scripts' own default is .caption
shuffle_caption = true
keep_tokens = 1                         # the trigger word stays first while tags shuffle
enable_bucket = true
min_bucket_reso = 128
max_bucket_reso = 512
bucket_reso_steps = 64
bucket_no_upscale = false

[[datasets]]
resolution = 256                        # small, so the sample trains in seconds on a CPU; 512 for SD1.5
batch_size = 2

  # A character: no caption files, so every image trains on its class tokens.
  [[datasets.subsets]]
  name = "mira"
  image_dir = "data/mira"
  num_repeats = 10
  class_tokens = "mira woman"
  trigger_word = "mira"

  # A pose concept: captions describe everything except the pose, which the trigger word carries.
  [[datasets.subsets]]
  name = "armsup"
  image_dir = "data/armsup"
  num_repeats = 8
  flip_aug = true
  trigger_word = "armsup pose"

  # Regularization: generic people, so the LoRA does not turn every woman into mira.
  [[datasets.subsets]]
  name = "woman"
  image_dir = "reg/woman"
  is_reg = true
  num_repeats = 1
  class_tokens = "woman"

[training]
network_module = "networks.lora"
network_dim = 8
network_alpha = 4.0
learning_rate = 1e-4
unet_lr = 1e-4
text_encoder_lr = 5e-5
optimizer_type = "AdamW"
lr_scheduler = "cosine"
lr_warmup_steps = 0
max_train_steps = 40                    # enough to watch the loop on a CPU; a real LoRA: max_train_epochs = 10
mixed_precision = "no"                  # "bf16" on a GPU; on a CPU it is slower than fp32
save_precision = "fp16"
save_model_as = "safetensors"
save_every_n_epochs = 1
sdpa = true
cache_latents = true
max_data_loader_n_workers = 0           # latents are cached: loader workers would only add start-up
seed = 42
prior_loss_weight = 1.0

[launch]
num_processes = 1
'''


def make(dest: Path) -> None:
    rng = random.Random(1234)
    mira = dest / "data" / "mira"
    armsup = dest / "data" / "armsup"
    reg = dest / "reg" / "woman"
    for folder in (mira, armsup, reg, dest / "configs"):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        bg = rng.choice(list(BACKGROUNDS.values()))
        img = scene(rng, SIZES[i % len(SIZES)], bg, hair=(20, 170, 170), body=(240, 130, 30),
                    arms_up=False)
        img.save(mira / f"mira_{i:02d}.png", optimize=True)
    for i in range(14):
        bg_name, bg = rng.choice(list(BACKGROUNDS.items()))
        shirt_name, shirt = rng.choice(list(SHIRTS.items()))
        hair = tuple(rng.randrange(30, 220) for _ in range(3))
        img = scene(rng, SIZES[(i + 2) % len(SIZES)], bg, hair=hair, body=shirt, arms_up=True)
        img.save(armsup / f"pose_{i:02d}.png", optimize=True)
        tags = ["armsup pose", "1person", shirt_name, "short hair", bg_name, "simple shapes"]
        (armsup / f"pose_{i:02d}.txt").write_text(", ".join(tags) + "\n", encoding="utf-8")
    for i in range(6):
        bg = rng.choice(list(BACKGROUNDS.values()))
        hair = tuple(rng.randrange(30, 220) for _ in range(3))
        body = tuple(rng.randrange(30, 220) for _ in range(3))
        scene(rng, (512, 512), bg, hair=hair, body=body, arms_up=False).save(reg / f"woman_{i:02d}.png",
                                                                            optimize=True)
    (dest / "lora-tui.toml").write_text(PROJECT_TOML, encoding="utf-8")
    (dest / "configs" / ".gitkeep").write_text("", encoding="utf-8")


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "sample_project")

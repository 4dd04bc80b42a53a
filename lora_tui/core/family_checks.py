"""Settings that contradict the base model's family (SD1 / SD2 / SD2-v / SDXL), as sd-scripts judges them.

One list, read by `lora-tui check` (lint) and `lora-tui doctor`, so both say the same thing. The
facts are sd-scripts': `sdxl_train_network.py` asserts `v2` is off, weighted captions are off, TE
output caching only with `network_train_unet_only` and without caption shuffling/dropout/token
warm-up, and bucket steps divisible by 32 (64 for train_network.py); it warns that
`v_parameterization` and `clip_skip` are not meant for SDXL (library/sdxl_train_util.py
verify_sdxl_training_args, sdxl_train_network.py assert_extra_args). `train_network.py` has no
TE-output caching options at all, and keeps unknown keys of a config file without a word, so an
SDXL-only option on an SD1/SD2 model would silently never apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lora_tui.core.findings import ERROR, WARNING
from lora_tui.core.model_family import LABELS, SD1, SD2, SD2_V, SDXL
from lora_tui.core.train_settings import SETTINGS

SDXL_ONLY = tuple(name for name, row in SETTINGS.items() if row.sdxl_only)  # the table marks them
TE_CACHE_CONFLICTS = ("shuffle_caption", "caption_dropout_rate", "token_warmup_step", "caption_tag_dropout_rate")
SDXL_NATIVE = 1024  # SDXL was trained at about 1024×1024 pixels of area


@dataclass(frozen=True)
class FamilyProblem:
    severity: str
    code: str
    message: str
    fix: str


def family_problems(family: str | None, args: Mapping[str, Any], *, backend: str,
                    subsets: Iterable[Mapping[str, Any]] = ()) -> list[FamilyProblem]:
    """What is wrong with `args` ([model] + [training]) for a model of `family` (None: unknown, no checks).

    `subsets` are the dataset subsets' effective values (their own, their dataset's, [general]'s), for
    the options TE-output caching cannot be combined with.
    """
    out: list[FamilyProblem] = []
    add = lambda *a: out.append(FamilyProblem(*a))  # noqa: E731
    if family is None:
        return out
    label = LABELS.get(family, family)
    if family == SDXL:
        if args.get("v2"):
            add(ERROR, "family-v2", "[model] v2 = true but the base model is SDXL "
                "(sdxl_train_network.py asserts v2 is off)", "remove v2 from [model]")
        if args.get("v_parameterization"):
            add(WARNING, "family-v-param", "v_parameterization on an SDXL model: SDXL base predicts noise "
                "(sd-scripts warns the result is unexpected)", "remove v_parameterization unless the model is a "
                "v-prediction SDXL fine-tune")
        if args.get("clip_skip") is not None:
            add(WARNING, "family-clip-skip", "clip_skip has no effect on SDXL (sd-scripts ignores it with a "
                "warning; SDXL always uses the penultimate layers)", "remove clip_skip")
        if args.get("weighted_captions"):
            add(ERROR, "family-weighted", "weighted_captions cannot be used with SDXL (sdxl_train_network.py asserts)",
                "remove weighted_captions")
        if args.get("mixed_precision") == "fp16" and not args.get("no_half_vae"):
            add(WARNING, "sdxl-half-vae", "SDXL's VAE overflows in fp16 (NaN latents, black samples) and "
                "no_half_vae is off", "set no_half_vae = true, or use mixed_precision = \"bf16\"")
        if args.get("cache_text_encoder_outputs") or args.get("cache_text_encoder_outputs_to_disk"):
            if not args.get("network_train_unet_only"):
                add(ERROR, "te-cache-unet-only", "cache_text_encoder_outputs needs network_train_unet_only = true "
                    "(the text encoders' LoRA cannot train on cached outputs; sd-scripts asserts)",
                    "set network_train_unet_only = true, or turn off cache_text_encoder_outputs")
            for sub in subsets:
                used = [k for k in TE_CACHE_CONFLICTS if sub.get(k)]
                if used:
                    add(ERROR, "te-cache-captions", f"{sub.get('label', 'a subset')}: {', '.join(used)} cannot be used "
                        "while caching text-encoder outputs (the captions would change every epoch; sd-scripts "
                        "asserts)", f"set {used[0]} off, or turn off cache_text_encoder_outputs")
    else:
        for key in SDXL_ONLY:
            if args.get(key):
                add(ERROR, "sdxl-only-option", f"{key} is an SDXL option (sdxl_train_network.py) but the base model "
                    f"is {label}: train_network.py would silently ignore it", f"remove {key}")
        if args.get("v2") and family == SD1:
            add(ERROR, "family-v2", "[model] v2 = true but the base model is SD1.x", "remove v2 from [model]")
        if family in (SD2, SD2_V) and not args.get("v2") and backend == "sd-scripts":
            add(ERROR, "family-v2", f"{label} model without [model] v2 = true: sd-scripts fails to load it",
                "set v2 = true in [model]")
        if family == SD2_V and not args.get("v_parameterization"):
            add(WARNING, "family-v-param", "the model predicts v (SD2.x-v) but v_parameterization is off: "
                "training would fight the model", "set v_parameterization = true in [model]")
    return out


def resolution_problems(family: str | None, resolutions: Iterable[tuple[str, tuple[int, int]]]) -> list[FamilyProblem]:
    """Dataset sizes that do not suit an SDXL model: below the 1024-class area it was trained at.

    (Bucket steps need only be divisible by 32 for SDXL: the project loader and the generated
    configs pass that multiple to `dataset_toml.validate`.)
    """
    out: list[FamilyProblem] = []
    if family != SDXL:
        return out
    for where, (w, h) in resolutions:
        if w * h < SDXL_NATIVE * SDXL_NATIVE * 0.75:
            out.append(FamilyProblem(WARNING, "sdxl-resolution", f"{where}: resolution {w}x{h} on an SDXL model: "
                       "SDXL was trained at 1024x1024-class sizes and smaller training images give blurry, "
                       "off-composition results", f"set {where} resolution = 1024 (and max_bucket_reso = 2048)"))
    return out


def bucket_step_multiple(family: str | None) -> int:
    """What bucket_reso_steps must divide by: 32 for sdxl_train_network.py, 64 for train_network.py."""
    return 32 if family == SDXL else 64

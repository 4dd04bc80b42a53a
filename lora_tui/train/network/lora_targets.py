"""Which base-model layers get a LoRA adapter, and the sd-scripts names those adapters take.

Kept apart from :mod:`lora_tui.train.network.lora` because this is the one part that must match
kohya-ss/sd-scripts' `networks.lora` walk exactly (reference §5): the module classes it looks inside,
the Linear/Conv2d layers it wraps there, and the `lora_unet_`/`lora_te_` + module path ("." → "_")
names a saved file is keyed by. The adapter maths and the network object live in ``lora``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lora_tui.train.network.sdxl_names import sgm_paths

UNET_PREFIX = "lora_unet"
TE_PREFIX = "lora_te"
# sd-scripts' UNET_TARGET_REPLACE_MODULE and UNET_TARGET_REPLACE_MODULE_CONV2D_3X3.
UNET_TARGETS = ("Transformer2DModel",)
UNET_CONV_TARGETS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
# sd-scripts' TEXT_ENCODER_TARGET_REPLACE_MODULE; transformers renames the attention class per
# backend (CLIPSdpaAttention, CLIPFlashAttention2, …), so any CLIP*Attention matches.
TE_TARGETS = ("CLIPAttention", "CLIPMLP")


def is_te_target(class_name: str) -> bool:
    return class_name in TE_TARGETS or (class_name.startswith("CLIP") and class_name.endswith("Attention"))


def te_path_prefix(text_encoder: nn.Module) -> str:
    """"text_model." when the CLIP text model has no `text_model` wrapper (transformers ≥ 5 folds it in).

    The file keeps the names sd-scripts writes (`lora_te_text_model_encoder_layers_…`) whatever the
    transformers version; diffusers strips the prefix again when its text encoder lacks it.
    """
    return "" if hasattr(text_encoder, "text_model") else "text_model."


def find_targets(root: nn.Module, prefix: str, match: Callable[[str], bool],
                 path_prefix: str = "", sgm: bool = False) -> list[tuple[str, nn.Module]]:
    """(lora_name, layer) for every Linear/Conv2d inside a module whose class matches, sd-scripts' walk.

    `sgm`: `root` is an SDXL diffusers U-Net and the names take the original layout's module paths.
    """
    layers: dict[str, nn.Module] = {}
    for name, module in root.named_modules():
        if not match(type(module).__name__):
            continue
        for child_name, child in module.named_modules():
            if child_name and isinstance(child, (nn.Linear, nn.Conv2d)):
                layers.setdefault(f"{name}.{child_name}", child)
    rename = sgm_paths(root.config, layers) if sgm else {}
    found: dict[str, nn.Module] = {}
    for path, child in layers.items():
        found.setdefault(f"{prefix}.{path_prefix}{rename.get(path, path)}".replace(".", "_"), child)
    return list(found.items())

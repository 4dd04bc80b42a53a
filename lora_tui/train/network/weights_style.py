"""Which LoRA files the trainer continues from (`network_weights`), as sd-scripts' `networks.lora`.

sd-scripts reads only kohya-style tensors (`lora_unet_…`/`lora_te…` + `lora_down`/`lora_up`/`alpha`).
For SDXL its create_network_from_weights renames kohya-prefixed U-Net modules written in diffusers'
layout (`lora_unet_down_blocks_1_attentions_0_…`, what some converters write) to the original layout
(convert_diffusers_to_sai_if_needed); that is done here too, for `dim_from_weights` and for plain
`network_weights` alike (sd-scripts' load_weights would silently drop those keys, strict=False).
A diffusers- or peft-style file (`unet.…lora_A.weight`) is not converted by sd-scripts: it loads
nothing from it. Here that is one line naming the file and the command that converts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lora_tui.core.errors import TrainError
from lora_tui.core.lora_inspect import key_style
from lora_tui.train.network.file import read_weights
from lora_tui.train.network.sdxl_names import lora_family

_DIFFUSERS_BLOCKS = ("lora_unet_down_blocks_", "lora_unet_mid_block_", "lora_unet_up_blocks_")


def read_kohya_weights(source: str | Path | Mapping[str, torch.Tensor], *, sdxl: bool,
                       ) -> tuple[Mapping[str, torch.Tensor], dict[str, str], Path | None]:
    """(kohya state dict, metadata, path) of a `network_weights` file for a network on SDXL or not."""
    state_dict, metadata, path = read_weights(source)
    style = key_style(list(state_dict))
    if style in ("diffusers", "peft"):
        shown = path if path is not None else "FILE"
        raise TrainError(f"this is a {style}-style LoRA (lora_A/lora_B keys); network_weights takes kohya-style "
                         "files, as sd-scripts does", path=path,
                         hint=f"convert it first: lora-tui lora convert {shown} --to kohya")
    # SD1/SD2 kohya names are in diffusers' layout too: such a file is left for the family check
    if (sdxl and any(k.startswith(_DIFFUSERS_BLOCKS) for k in state_dict)
            and lora_family(state_dict, metadata) != "sd"):
        state_dict = sdxl_unet_to_original_layout(state_dict)
    return state_dict, metadata, path


def sdxl_unet_to_original_layout(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """`lora_unet_<diffusers path>` module names → `lora_unet_<original (SGM) path>`, others kept; the
    state dict unchanged when a name has no place in SDXL's U-Net (the load then names that key)."""
    from lora_tui.train.lora_tools.convert import kohya_to_path, path_to_kohya
    from lora_tui.train.lora_tools.factors import LoraToolError

    renamed: dict[str, str] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        module, _, tail = key.partition(".")
        if module.startswith(_DIFFUSERS_BLOCKS):
            if module not in renamed:
                try:
                    renamed[module] = path_to_kohya("unet", kohya_to_path(module)[1], sdxl=True)
                except LoraToolError:
                    return state_dict
            module = renamed[module]
        out[f"{module}.{tail}"] = value
    return out

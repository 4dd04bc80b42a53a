"""Load the base model for training, whatever its family: SD1/SD2 through `load`, SDXL through `sdxl_load`.

The family is read from the file's header or the Diffusers folder's layout (core.model_family, the
same answer `lora-tui check` and `doctor` give), so the trainer never guesses from flags. An SDXL
model with `v2` set is sd-scripts' assertion (`v2 cannot be enabled in SDXL training`), as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_tui.core import model_family
from lora_tui.core.errors import ModelError


def load_training_model(path: str | Path, *, v2: bool = False, v_parameterization: bool = False,
                        tokenizer_cache_dir: str | Path | None = None) -> Any:
    """A `load.BaseModel` (SD1/SD2) or a `sdxl_load.SdxlBaseModel` (`is_sdxl`), loaded offline."""
    source = Path(path).expanduser()
    if source.exists() and model_family.family_or_none(source) == model_family.SDXL:
        if v2:
            raise ModelError("v2 = true but this is an SDXL model (sdxl_train_network.py asserts v2 is off)",
                             path=source, hint="remove v2 from [model]")
        from lora_tui.train.model.sdxl_load import load_sdxl_model

        return load_sdxl_model(source, tokenizer_cache_dir=tokenizer_cache_dir,
                               v_parameterization=v_parameterization)
    from lora_tui.train.model.load import load_base_model

    return load_base_model(path, v2=v2, v_parameterization=v_parameterization,
                           tokenizer_cache_dir=tokenizer_cache_dir)

"""Why SD1/SD2 single files load through our converter and not diffusers' (see train/model/load.py).

Both loaders must agree wherever both read a file; the cases where only ours reads it are the
reason to keep it, and a test here fails when diffusers catches up (then the decision is worth
revisiting).
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lora_tui.core.errors import ModelError
from lora_tui.train.model.load import load_base_model

pytestmark = pytest.mark.usefixtures("no_network")


def _variant(tmp_path: Path, single: Path, name: str, state: dict[str, torch.Tensor], suffix: str = ".safetensors",
             ) -> Path:
    """`state` written beside a copy of the tiny model's tokenizer, with its configs metadata."""
    with safe_open(str(single), "pt") as handle:
        meta = handle.metadata()
    shutil.copytree(single.parent / "tokenizer", tmp_path / f"{name}.tokenizer")
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file(state, path, metadata=meta)
    else:
        torch.save({"state_dict": state, "lora_tui.configs": meta["lora_tui.configs"]}, path)
    return path


def _diffusers(path: Path, folder: Path) -> object:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(str(path), config=str(folder), local_files_only=True,
                                                    safety_checker=None)


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


@pytest.mark.parametrize("case", ["ema", "fp16", "ckpt"])
def test_both_loaders_agree_on_files_both_read(case: str, tmp_path: Path, tiny_model_dir: Path,
                                               tiny_single_file: Path) -> None:
    state = load_file(tiny_single_file)
    if case == "ema":  # EMA copies with other values: both take the non-EMA weights
        state.update({"model_ema." + k[len("model."):].replace(".", ""): v + 1 for k, v in state.items()
                      if k.startswith("model.diffusion_model.")})
    elif case == "fp16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = _variant(tmp_path, tiny_single_file, case, state, ".ckpt" if case == "ckpt" else ".safetensors")
    theirs, ours = _diffusers(path, tiny_model_dir), load_base_model(path)
    for part in ("unet", "vae", "text_encoder"):
        assert _equal(getattr(theirs, part), getattr(ours, part)), part


def test_only_ours_reads_text_encoder_keys_without_text_model(tmp_path: Path, tiny_model_dir: Path,
                                                              tiny_single_file: Path) -> None:
    old = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
           for k, v in load_file(tiny_single_file).items()}
    path = _variant(tmp_path, tiny_single_file, "old", old)
    assert _equal(load_base_model(path).text_encoder, load_base_model(tiny_single_file).text_encoder)
    with pytest.raises(Exception, match="CLIPTextModel"):
        _diffusers(path, tiny_model_dir)


class _Code:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.getcwd, ())


def test_a_pickle_with_code_is_refused_by_both_but_only_ours_says_why(tmp_path: Path, tiny_model_dir: Path,
                                                                      tiny_single_file: Path) -> None:
    path = tmp_path / "code.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": _Code()}))
    shutil.copytree(tiny_single_file.parent / "tokenizer", tmp_path / "code.tokenizer")
    with pytest.raises(ModelError, match="weights-only"):
        load_base_model(path)
    with pytest.raises(OSError, match="Unable to load weights"):
        _diffusers(path, tiny_model_dir)

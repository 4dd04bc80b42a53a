"""SDXL as a new user meets it: make-tiny-model --sdxl --single-file, a project, check, train, diffusers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lora_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def _lora_tui(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lora_tui", *args], capture_output=True, text=True, timeout=600,
                          env={**ENV, "HOME": str(home)})


@pytest.mark.usefixtures("no_network")
def test_tiny_sdxl_single_file_checks_trains_and_loads_in_diffusers_sdxl(tmp_path: Path) -> None:
    assert main(["make-tiny-model", str(tmp_path / "m"), "--sdxl", "--single-file"]) == 0
    model = tmp_path / "m" / "model.safetensors"
    project = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    toml = project / "lora-tui.toml"
    toml.write_text(toml.read_text().replace('"lora-tui:tiny-sd15"', json.dumps(str(model))), "utf-8")

    check = _lora_tui("check", str(project), home=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "sd-scripts backend" not in check.stdout + check.stderr  # the built-in trainer takes SDXL now

    result = _lora_tui("train", str(project), "--max-train-steps", "2", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = (project / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["last_step"] == 2
    lora = run / "output" / "sample.safetensors"

    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from safetensors import safe_open

    from lora_tui.train.model.sdxl_load import load_sdxl_model

    with safe_open(str(lora), framework="pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert any(k.startswith("lora_te1_") for k in keys) and any(k.startswith("lora_te2_") for k in keys)
    assert any(k.startswith("lora_unet_input_blocks_") for k in keys)

    base = load_sdxl_model(model)
    pipe = StableDiffusionXLPipeline(vae=base.vae, text_encoder=base.text_encoders[0],
                                     text_encoder_2=base.text_encoders[1], tokenizer=base.tokenizers[0],
                                     tokenizer_2=base.tokenizers[1], unet=base.unet,
                                     scheduler=EulerDiscreteScheduler(), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)

    def draw() -> torch.Tensor:
        return pipe("mira woman", num_inference_steps=2, height=64, width=64, output_type="pt",
                    generator=torch.Generator().manual_seed(0)).images

    before = draw()
    weights = {name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()}
               for name in ("unet", "text_encoder", "text_encoder_2")}
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    pipe.fuse_lora(lora_scale=50.0)  # a 2-step LoRA is small: scaled up so its effect shows in the pixels
    pipe.unload_lora_weights()  # keeps the fused weights, restores plain module names
    after = draw()
    assert not torch.allclose(before, after)
    for name, old in weights.items():  # all three parts got their trained deltas
        new = getattr(pipe, name).state_dict()
        assert any(not torch.equal(new[k], v) for k, v in old.items() if k in new), name

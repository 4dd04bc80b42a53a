"""Sample images during SDXL training, from the same prompt files and with the same names as SD1's.

The live (LoRA-patched) modules are wrapped in diffusers' `StableDiffusionXLPipeline` without copying
weights. Prompts are encoded here with the trainer's own SDXL encoding (penultimate states of both
encoders, bigG's pooled EOS projection: sd-scripts' maths), the negative prompt too (an empty one is
the encoding of "", as sd-scripts does, not zeros); the pipeline adds the size conditioning of an
uncropped image at the prompt's size, as sd-scripts' SDXL sampling does. The prompt-file syntax,
samplers, seeds, file names and the RNG/train-mode restoration are sampling.py's.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lora_tui.train.loop.sampling import SamplePrompt, _sampling_state, make_sample_scheduler, sample_filename
from lora_tui.train.model.sdxl_text import SdxlTextEncoding


def generate_sdxl_samples(*, model: Any, prompts: list[SamplePrompt], out_dir: Path, output_name: str | None,
                          step: int, epoch: int | None, device: torch.device | str, dtype: torch.dtype,
                          sampler: str, network: torch.nn.Module | None = None) -> list[tuple[Path, SamplePrompt]]:
    """Draw each prompt with the SDXL model's current modules; (path, prompt with its seed) per image."""
    from diffusers import StableDiffusionXLPipeline

    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    te1, te2 = model.text_encoders
    modules = [m for m in (te1, te2, model.vae, model.unet, network) if m is not None]
    use_autocast = dtype in (torch.float16, torch.bfloat16)
    text = SdxlTextEncoding(model.tokenizers, model.text_encoders)
    results: list[tuple[Path, SamplePrompt]] = []
    with _sampling_state(modules, device), torch.no_grad():
        pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=te1, text_encoder_2=te2,
                                         tokenizer=model.tokenizers[0], tokenizer_2=model.tokenizers[1],
                                         unet=model.unet, scheduler=make_sample_scheduler(sampler,
                                                                                          model.v_parameterization),
                                         add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        for prompt in prompts:
            seed = prompt.seed if prompt.seed is not None else random.SystemRandom().randrange(2**32)
            pipe.scheduler = make_sample_scheduler(prompt.sampler or sampler, model.v_parameterization)
            generator = torch.Generator(device).manual_seed(seed)
            autocast = torch.autocast(device.type, dtype=dtype) if use_autocast else nullcontext()
            with autocast:
                cond, pooled = text([prompt.prompt], device, frozen=False)
                uncond, uncond_pooled = text([prompt.negative_prompt or ""], device, frozen=False)
                image = pipe(prompt_embeds=cond, pooled_prompt_embeds=pooled, negative_prompt_embeds=uncond,
                             negative_pooled_prompt_embeds=uncond_pooled, height=prompt.height, width=prompt.width,
                             num_inference_steps=prompt.steps, guidance_scale=prompt.scale, generator=generator,
                             output_type="pil").images[0]
            path = out_dir / sample_filename(output_name, prompt, step=step, epoch=epoch)
            image.save(path, format="PNG")
            results.append((path, replace(prompt, seed=seed)))
        del pipe
    return results

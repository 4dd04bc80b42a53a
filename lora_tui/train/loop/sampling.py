"""Sample images during training, the way kohya-ss/sd-scripts makes them (reference §3.10).

Users keep one prompt file for both trainers, so `load_prompts` reads sd-scripts' `.txt`, `.toml` and
`.json` formats with its quirks (options split on " --", sizes rounded down to multiples of 8, steps
clamped to 1-1000), and sample files get sd-scripts' names so tools that sort or glob them keep working.
The prompt file is re-read at every sampling event because people edit it while training runs.

`generate_samples` wraps the live (LoRA-patched) modules in a `StableDiffusionPipeline` without
copying weights. Prompts are encoded here rather than by the pipeline: diffusers' `clip_skip` is off
by one from sd-scripts' (diffusers n = hidden_states[-(n+1)], sd-scripts n = hidden_states[-n]), it
skips clip_skip for the negative prompt, and with transformers ≥ 5 its `text_encoder.text_model`
lookup fails because CLIPTextModel no longer has that level. Encoding here gives sd-scripts' maths.
Not reproduced: sd-scripts' long-prompt-weighting pipeline (`(word:1.2)` weights and prompts past
75 tokens); prompts are encoded plainly and truncated at 77 tokens.
"""

from __future__ import annotations

import inspect
import json
import logging
import random
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)

from lora_tui.core.errors import TrainError

log = logging.getLogger(__name__)

DEFAULT_STEPS, DEFAULT_SIZE, DEFAULT_SCALE = 30, 512, 7.5
MIN_SIZE, MAX_STEPS = 64, 1000
PROMPT_SUFFIXES = (".txt", ".toml", ".json")

# sd-scripts' get_my_scheduler: name → class; unknown names fall back to DDIM there too.
SAMPLERS: dict[str, type] = {
    "ddim": DDIMScheduler, "ddpm": DDPMScheduler, "pndm": PNDMScheduler,
    "lms": LMSDiscreteScheduler, "k_lms": LMSDiscreteScheduler,
    "euler": EulerDiscreteScheduler, "k_euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler, "k_euler_a": EulerAncestralDiscreteScheduler,
    "dpmsolver": DPMSolverMultistepScheduler, "dpmsolver++": DPMSolverMultistepScheduler,
    "dpmsingle": DPMSolverSinglestepScheduler, "heun": HeunDiscreteScheduler,
    "dpm_2": KDPM2DiscreteScheduler, "k_dpm_2": KDPM2DiscreteScheduler,
    "dpm_2_a": KDPM2AncestralDiscreteScheduler, "k_dpm_2_a": KDPM2AncestralDiscreteScheduler,
}

# The `.txt` options sd-scripts reads: (regex on one " --" segment, dict key, converter).
# `re.match` anchors only at the start, as there: "--w 512px" is width 512, "--w512" is ignored.
_OPTIONS: tuple[tuple[re.Pattern[str], str, Any], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), key, conv) for pattern, key, conv in (
        (r"w (\d+)", "width", int), (r"h (\d+)", "height", int), (r"d (\d+)", "seed", int),
        (r"s (\d+)", "sample_steps", int), (r"l ([\d\.]+)", "scale", float),
        (r"g ([\d\.]+)", "guidance_scale", float), (r"n (.+)", "negative_prompt", str),
        (r"ss (.+)", "sample_sampler", str), (r"cn (.+)", "controlnet_image", str),
        (r"ctr (.+)", "cfg_trunc_ratio", float), (r"rcfg (.+)", "renorm_cfg", float),
        (r"fs (.+)", "flow_shift", str),
    ))


@dataclass(frozen=True)
class SamplePrompt:
    """One sample to draw; sizes already rounded like sd-scripts does just before inference.

    `seed` None means a fresh random seed per event; `sampler` None means the run's `--sample_sampler`.
    `index` is the prompt's position in the file (sd-scripts' `enum`), used in the image name.
    """

    prompt: str
    negative_prompt: str | None = None
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    seed: int | None = None
    steps: int = DEFAULT_STEPS
    scale: float = DEFAULT_SCALE
    sampler: str | None = None
    index: int = 0

    def to_event(self) -> dict[str, Any]:
        """The JSON-ready form a `sample` event carries."""
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "width": self.width,
                "height": self.height, "seed": self.seed, "steps": self.steps, "scale": self.scale,
                "sampler": self.sampler, "index": self.index}


def line_to_prompt_dict(line: str) -> dict[str, Any]:
    """Parse one `.txt` line into sd-scripts' prompt dict keys.

    Like sd-scripts, every segment (the prompt text included) is tried against the options, and a
    segment that matches none (e.g. "--no-style" typed into a prompt) is dropped silently.
    A value that matches but does not convert (`--l 1.2.3`) raises ValueError (sd-scripts logs it
    and carries on; here the caller turns it into a TrainError naming the line).
    """
    segments = line.split(" --")
    result: dict[str, Any] = {"prompt": segments[0]}
    for segment in segments:
        for pattern, key, conv in _OPTIONS:
            m = pattern.match(segment)
            if m:
                try:
                    result[key] = conv(m.group(1))
                except ValueError as exc:
                    raise ValueError(f"bad value in option --{segment.strip()!r}: {exc}") from None
                break
    return result


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return int(float(value)) if isinstance(value, str) else int(value)


def prompt_from_dict(data: dict[str, Any], index: int) -> SamplePrompt:
    """Build a SamplePrompt from sd-scripts' dict keys (TOML/JSON entries, parsed `.txt` lines).

    sd-scripts applies the defaults and the size rounding when it draws, and clamps steps only for
    `.txt`; here everything is normalised once, so a TOML `sample_steps = 5000` is clamped too.
    """
    def get(key: str, default: Any) -> Any:
        value = data.get(key)
        return default if value is None else value

    width = _to_int(get("width", DEFAULT_SIZE), "width")
    height = _to_int(get("height", DEFAULT_SIZE), "height")
    seed = data.get("seed")
    negative = data.get("negative_prompt")
    sampler = data.get("sample_sampler")
    return SamplePrompt(
        prompt=str(get("prompt", "")),
        negative_prompt=None if negative is None else str(negative),
        width=max(MIN_SIZE, width - width % 8),
        height=max(MIN_SIZE, height - height % 8),
        seed=None if seed is None else _to_int(seed, "seed"),
        steps=max(1, min(MAX_STEPS, _to_int(get("sample_steps", DEFAULT_STEPS), "sample_steps"))),
        scale=float(get("scale", DEFAULT_SCALE)),
        sampler=None if sampler is None else str(sampler).strip().lower(),
        index=index,
    )


def load_prompts(path: Path) -> list[SamplePrompt]:
    """Read a sample prompt file (.txt, .toml, .json) into prompts, numbered in file order.

    `.txt`: one prompt per line; empty lines and lines whose first character is "#" are skipped
    (an indented "#" is a prompt, as in sd-scripts). `.toml`: `[prompt]` holds defaults merged into
    each `[[prompt.subset]]` (a subset may override a default; sd-scripts crashes on that). `.json`:
    a list of dicts (sd-scripts' keys) or strings (parsed like `.txt` lines).
    Anything unusable is a TrainError naming the file and, where known, the line or entry.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SUFFIXES:
        raise TrainError(f"unsupported sample prompt file type {path.suffix!r}", path=path,
                         hint="use .txt, .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"cannot read sample prompts: {exc}", path=path) from None
    if suffix == ".txt":
        return _load_txt(path, text)
    entries = _load_toml(path, text) if suffix == ".toml" else _load_json(path, text)
    prompts = []
    for index, entry in enumerate(entries):
        try:
            if isinstance(entry, str):
                entry = line_to_prompt_dict(entry.strip())
            if not isinstance(entry, dict):
                raise ValueError(f"expected a table/object or a string, not {type(entry).__name__}")
            prompts.append(prompt_from_dict(entry, index))
        except (ValueError, TypeError) as exc:
            raise TrainError(f"sample prompt {index + 1}: {exc}", path=path) from None
    return prompts


def _load_txt(path: Path, text: str) -> list[SamplePrompt]:
    prompts: list[SamplePrompt] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or raw.startswith("#"):
            continue
        try:
            prompts.append(prompt_from_dict(line_to_prompt_dict(line), len(prompts)))
        except ValueError as exc:
            raise TrainError(str(exc), path=path, line=lineno) from None
    return prompts


def _load_toml(path: Path, text: str) -> list[Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise TrainError(f"invalid TOML: {exc}", path=path, line=int(m.group(1)) if m else None) from None
    section = data.get("prompt")
    subsets = section.get("subset") if isinstance(section, dict) else None
    if not isinstance(subsets, list):
        raise TrainError("no [[prompt.subset]] tables", path=path,
                         hint="write [prompt] defaults and one [[prompt.subset]] per prompt")
    defaults = {k: v for k, v in section.items() if k != "subset"}
    return [{**defaults, **s} if isinstance(s, dict) else s for s in subsets]


def _load_json(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, list):
        raise TrainError("expected a JSON list of prompts", path=path)
    return data


def make_sample_scheduler(name: str | None, v_parameterization: bool, *, clip_sample: bool = True) -> Any:
    """A fresh inference scheduler for an sd-scripts `--sample_sampler` / `--ss` name.

    SD's schedule is built locally (beta 0.00085-0.012 scaled_linear, 1000 steps, default
    steps_offset 0) rather than read from the model. sd-scripts then forces `clip_sample` on
    wherever the scheduler has it (DDIM's default is already True; Heun's is switched on), so
    `clip_sample=True` reproduces its images; pass False for diffusers' usual SD setting.
    Unknown names give DDIM, as in sd-scripts, with a warning.
    """
    key = (name or "ddim").strip().lower()
    cls = SAMPLERS.get(key)
    if cls is None:
        log.warning("unknown sample sampler %r, using ddim", name)
        key, cls = "ddim", DDIMScheduler
    kwargs: dict[str, Any] = {}
    if key in ("dpmsolver", "dpmsolver++"):
        kwargs["algorithm_type"] = key
    if key == "dpmsolver":  # newer diffusers refuse their default final sigma 0 here; sigma_min was the old behaviour
        kwargs["final_sigmas_type"] = "sigma_min"
    if v_parameterization:
        kwargs["prediction_type"] = "v_prediction"
    if "clip_sample" in inspect.signature(cls.__init__).parameters:
        kwargs["clip_sample"] = clip_sample
    try:
        with warnings.catch_warnings():  # "dpmsolver is deprecated" would repeat at every sample event
            warnings.simplefilter("ignore", FutureWarning)
            return cls(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                       **kwargs)
    except ImportError as exc:  # diffusers' placeholder classes: LMS needs scipy
        missing = "scipy" if "scipy" in str(exc) else "its optional dependencies"
        raise TrainError(f"sample sampler {key!r} needs {missing}", hint=f"pip install {missing} or choose "
                         "another --sample_sampler (e.g. euler, euler_a, ddim)") from None


def should_sample(step: int, epoch: int | None, *, every_n_steps: int | None, every_n_epochs: int | None,
                  at_first: bool, is_epoch_end: bool) -> bool:
    """sd-scripts' `sample_images_common` gate.

    Step 0 samples only with `--sample_at_first`. `every_n_epochs` overrides `every_n_steps` and fires
    only at the end of an epoch whose (1-based) number it divides; `every_n_steps` fires only on
    optimizer steps, never on the epoch-end call. Zero counts as unset (sd-scripts divides by it).
    """
    if step == 0:
        return at_first
    if every_n_epochs:
        return is_epoch_end and epoch is not None and epoch % every_n_epochs == 0
    if every_n_steps:
        return not is_epoch_end and step % every_n_steps == 0
    return False


def sample_filename(output_name: str | None, prompt: SamplePrompt, *, step: int, epoch: int | None,
                    when: float | None = None) -> str:
    """`<output_name>_<e%06d|%06d>_<NN>_<YYYYmmddHHMMSS>[_<seed>].png`, sd-scripts' sample name.

    The seed suffix appears only when the prompt file fixed the seed, as in sd-scripts.
    """
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(when))
    number = f"e{epoch:06d}" if epoch is not None else f"{step:06d}"
    seed = "" if prompt.seed is None else f"_{prompt.seed}"
    prefix = f"{output_name}_" if output_name else ""
    return f"{prefix}{number}_{prompt.index:02d}_{stamp}{seed}.png"


@contextmanager
def _sampling_state(modules: list[torch.nn.Module], device: torch.device) -> Iterator[None]:
    """Eval mode on `device` for the duration; every submodule's train flag and the module's device
    come back afterwards, and the global RNGs are restored so training randomness is unchanged."""
    flags = [(m, m.training) for root in modules for m in root.modules()]
    homes = []
    for module in modules:
        param = next(module.parameters(), None)
        homes.append((module, param.device if param is not None else device))
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        for module, home in homes:
            module.eval()
            if home != device:
                module.to(device)
        yield
    finally:
        for module, home in homes:
            if home != device:
                module.to(home)
        for module, training in flags:
            module.training = training
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _encode(tokenizer: Any, text_encoder: torch.nn.Module, text: str, device: torch.device,
            clip_skip: int | None) -> torch.Tensor:
    """sd-scripts' conditioning for one prompt: last hidden state, or hidden_states[-clip_skip] + final LN."""
    ids = tokenizer([text], padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids.to(device)
    if not clip_skip or clip_skip <= 1:
        return text_encoder(ids)[0]
    out = text_encoder(ids, output_hidden_states=True)
    model = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 dropped `text_model`
    return model.final_layer_norm(out.hidden_states[-clip_skip])


def generate_samples(*, tokenizer: Any, text_encoder: torch.nn.Module, vae: torch.nn.Module, unet: torch.nn.Module,
                     prompts: list[SamplePrompt], out_dir: Path, output_name: str | None, step: int,
                     epoch: int | None, device: torch.device | str, dtype: torch.dtype, sampler: str,
                     v_parameterization: bool, clip_skip: int | None = None,
                     network: torch.nn.Module | None = None) -> list[tuple[Path, SamplePrompt]]:
    """Draw each prompt with the current (LoRA-patched) modules and save PNGs named like sd-scripts'.

    `epoch` not None marks an epoch-triggered event (`e%06d` in the name; 0 for sample_at_first),
    None a step-triggered one. `dtype` is the autocast dtype (fp16/bf16 mixed precision; float32
    runs without autocast); weights are never cast. `network`, when given, is put in eval mode too,
    so LoRA dropout does not touch samples. `clip_skip` uses sd-scripts' numbering (2 = penultimate).
    Returns (path, prompt) per image; a prompt drawn with a random seed comes back with that seed,
    so the `sample` event records how to reproduce it (the file name keeps sd-scripts' form).
    """
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = [m for m in (text_encoder, vae, unet, network) if m is not None]
    use_autocast = dtype in (torch.float16, torch.bfloat16)
    results: list[tuple[Path, SamplePrompt]] = []
    with _sampling_state(modules, device), torch.no_grad():
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=None,  # set per prompt; None skips a steps_offset warning
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        for prompt in prompts:
            seed = prompt.seed if prompt.seed is not None else random.SystemRandom().randrange(2**32)
            # a fresh scheduler per prompt, as sd-scripts does (multistep samplers keep state)
            pipe.scheduler = make_sample_scheduler(prompt.sampler or sampler, v_parameterization)
            generator = torch.Generator(device).manual_seed(seed)
            autocast = torch.autocast(device.type, dtype=dtype) if use_autocast else nullcontext()
            with autocast:
                cond = _encode(tokenizer, text_encoder, prompt.prompt, device, clip_skip)
                uncond = _encode(tokenizer, text_encoder, prompt.negative_prompt or "", device, clip_skip)
                image = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=prompt.height,
                             width=prompt.width, num_inference_steps=prompt.steps, guidance_scale=prompt.scale,
                             generator=generator, output_type="pil").images[0]
            path = out_dir / sample_filename(output_name, prompt, step=step, epoch=epoch)
            image.save(path, format="PNG")
            results.append((path, replace(prompt, seed=seed)))
        del pipe
    return results

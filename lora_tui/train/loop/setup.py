"""Everything a run needs before its first step, and the per-step pieces the loop calls.

Models load offline and frozen in the training dtype; the LoRA is built (or continued from
``--network_weights``) and patched in; latents are cached when asked; the optimizer, schedule, text
encoding and the run's save/sample policy are set up from sd-scripts' flags.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lora_tui.core.errors import TrainError
from lora_tui.core.steps import train_length
from lora_tui.train.data.dataset import TrainData
from lora_tui.train.loop import sdxl
from lora_tui.train.loop.args import TrainArgs, network_kwargs, optimizer_kwargs
from lora_tui.train.loop.events import RunWriter
from lora_tui.train.loop.optim import make_optimizer, make_scheduler, warmup_steps
from lora_tui.train.model import builtin, onednn
from lora_tui.train.model.family import load_training_model
from lora_tui.train.model.text import TextEncoding
from lora_tui.train.network import saves as state_io
from lora_tui.train.network.file import build_metadata
from lora_tui.train.network.lora import LoRANetwork
from lora_tui.train.network.meta import dataset_facts, model_hashes, save_facts, training_facts

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32, "no": torch.float32}


@dataclass
class Setup:
    args: TrainArgs
    accelerator: Any
    writer: RunWriter
    model: Any
    network: LoRANetwork
    optimizer: Any
    scheduler: Any
    text: Any  # TextEncoding (SD1/SD2) or SdxlTextEncoding
    trainable: list[torch.nn.Parameter]
    steps_per_epoch: int
    epochs: int
    total_steps: int
    samples_per_step: int
    weight_dtype: torch.dtype
    vae_dtype: torch.dtype
    output_dir: Path
    state_dir: Path
    sample_dir: Path
    output_name: str
    base_facts: dict[str, Any]
    train_te: bool
    train_unet: bool
    last_state: Path | None = None
    snr: torch.Tensor | None = None
    sdxl: Any = None  # loop.sdxl.SdxlConditioning for SDXL models
    sample_warnings: set[str] = field(default_factory=set)

    # -- one batch ------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """sd-scripts' loss for one batch (mean over the batch)."""
        device = self.accelerator.device
        model = self.model
        scale = float(model.vae.config.scaling_factor)
        with torch.no_grad():
            if batch["latents"] is not None:
                latents = batch["latents"].to(device, self.weight_dtype) * scale
            else:
                images = batch["images"].to(device, self.vae_dtype)
                latents = model.vae.encode(images).latent_dist.sample().to(self.weight_dtype) * scale
        noise = torch.randn_like(latents)
        if self.args.noise_offset:
            noise = noise + float(self.args.noise_offset) * torch.randn(
                (latents.shape[0], latents.shape[1], 1, 1), device=device, dtype=latents.dtype)
        scheduler = model.noise_scheduler
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with self.accelerator.autocast():
            if self.sdxl is not None:
                pred = self.sdxl.predict(model.unet, noisy, timesteps, batch, device, self.weight_dtype)
            else:
                states = self.text(batch["captions"], device, frozen=not self.train_te)
                pred = model.unet(noisy, timesteps, states.to(self.weight_dtype)).sample
        if model.v_parameterization:
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        loss = loss * batch["loss_weights"].to(device)
        if self.args.min_snr_gamma:
            snr = self.snr[timesteps]
            gamma = torch.minimum(snr, torch.full_like(snr, float(self.args.min_snr_gamma)))
            loss = loss * (gamma / (snr + 1) if model.v_parameterization else gamma / snr)
        return loss.mean()

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average gradients across processes in one collective (ranks stay bit-identical)."""
        if self.accelerator.num_processes <= 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.accelerator.num_processes
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def learning_rates(self) -> dict[str, float]:
        lrs = self.scheduler.get_last_lr()
        names = [g.get("name") or f"group{i}" for i, g in enumerate(self.optimizer.param_groups)]
        return {name: float(lr) for name, lr in zip(names, lrs)}

    # -- saving ---------------------------------------------------------------------------------
    def _save_lora(self, name: str, step: int, epoch: int) -> Path:
        path = self.output_dir / name
        if not self.accelerator.is_main_process:
            return path
        precision = self.args.save_precision
        dtype = DTYPES.get(precision) if precision else None
        facts = save_facts(self.base_facts, step=step, epoch=epoch)
        metadata = build_metadata(facts, minimal=bool(self.args.no_metadata))
        self.network.save_weights(path, metadata, dtype=dtype)
        self.writer.event("save", step=step, epoch=epoch, path=str(path), type="lora")
        return path

    def _save_state(self, name: str, state: state_io.TrainState) -> None:
        folder = self.state_dir / name
        self.last_state = folder
        if not self.accelerator.is_main_process:
            return
        state_io.save_state(folder, network_state=self.network.state_dict(), optimizer=self.optimizer,
                            scheduler=self.scheduler, state=state, extra={"optimizer": type(self.optimizer).__name__})
        self.writer.event("save", step=state.step, epoch=state.epoch, path=str(folder), type="state")

    def should_save_step(self, step: int) -> bool:
        every = self.args.save_every_n_steps
        return bool(every) and step % int(every) == 0 and step < self.total_steps

    def should_save_epoch(self, epoch: int) -> bool:
        every = self.args.save_every_n_epochs
        return bool(every) and epoch % int(every) == 0 and epoch < self.epochs

    def save_step(self, step: int, epoch: int, state: state_io.TrainState, *, force_state: bool = False) -> str:
        return self._save_periodic(step, epoch, state, key={"step": step}, force_state=force_state,
                                   old=state_io.removable_step(step, self.args.save_every_n_steps,
                                                               self.args.save_last_n_steps))

    def save_epoch(self, step: int, epoch: int, state: state_io.TrainState) -> str:
        return self._save_periodic(step, epoch, state, key={"epoch": epoch}, force_state=False,
                                   old=state_io.removable_epoch(epoch, self.args.save_every_n_epochs,
                                                                self.args.save_last_n_epochs))

    def _save_periodic(self, step: int, epoch: int, state: state_io.TrainState, *, key: dict[str, int],
                       force_state: bool, old: int | None) -> str:
        """A step- or epoch-named save (``key``), its state when asked, and the save that fell out of
        the save_last_n window (``old``, same kind) removed."""
        ext = state_io.ext_of(self.args.save_model_as)
        path = self._save_lora(state_io.lora_name(self.output_name, ext, **key), step, epoch)
        if self.args.save_state or force_state:
            self._save_state(state_io.state_name(self.output_name, **key), state)
        if old is not None and self.accelerator.is_main_process:
            (kind,) = key
            state_io.remove_path(self.output_dir / state_io.lora_name(self.output_name, ext, **{kind: old}))
            # sd-scripts prunes the states with the same window (save_last_n_steps/epochs): a long run
            # with save_state must not keep every optimizer state ever written
            state_io.remove_path(self.state_dir / state_io.state_name(self.output_name, **{kind: old}))
        return str(path)

    def save_final(self, step: int, epoch: int, state: state_io.TrainState) -> str:
        ext = state_io.ext_of(self.args.save_model_as)
        path = self._save_lora(state_io.lora_name(self.output_name, ext), step, epoch)
        if self.args.save_state or self.args.save_state_on_train_end:
            self._save_state(state_io.state_name(self.output_name), state)
        return str(path)

    # -- samples --------------------------------------------------------------------------------
    def maybe_sample(self, *, step: int, epoch: int, epoch_end: bool) -> None:
        args = self.args
        if not args.sample_prompts or not (args.sample_every_n_steps or args.sample_every_n_epochs):
            return
        from lora_tui.train.loop.sampling import should_sample

        if should_sample(step, epoch, every_n_steps=args.sample_every_n_steps,
                         every_n_epochs=args.sample_every_n_epochs, at_first=False, is_epoch_end=epoch_end):
            self.sample(step=step, epoch=epoch if epoch_end else None)

    def sample(self, *, step: int, epoch: int | None) -> None:
        if not self.args.sample_prompts or not self.accelerator.is_main_process:
            return
        from lora_tui.train.loop.sampling import generate_samples, load_prompts

        model = self.model
        try:
            prompts = load_prompts(Path(self.args.sample_prompts))
            if self.sdxl is not None:
                from lora_tui.train.loop.sdxl_sampling import generate_sdxl_samples

                made = generate_sdxl_samples(model=model, prompts=prompts, out_dir=self.sample_dir,
                                             output_name=self.output_name, step=step, epoch=epoch,
                                             device=self.accelerator.device, dtype=self.weight_dtype,
                                             sampler=self.args.sample_sampler, network=self.network)
            else:
                with self.accelerator.autocast():
                    made = generate_samples(tokenizer=model.tokenizer, text_encoder=model.text_encoder,
                                            vae=model.vae,
                                            unet=model.unet, prompts=prompts, out_dir=self.sample_dir,
                                            output_name=self.output_name, step=step, epoch=epoch,
                                            device=self.accelerator.device, dtype=self.weight_dtype,
                                            sampler=self.args.sample_sampler, network=self.network,
                                            v_parameterization=model.v_parameterization,
                                            clip_skip=self.args.clip_skip)
        except TrainError as exc:  # a bad prompt file must not end a long run: say so (once) and keep training
            if str(exc) not in self.sample_warnings:
                self.sample_warnings.add(str(exc))
                self.writer.event("warn", code="sample", message=str(exc), step=step)
                self.writer.say(f"warning: no samples: {exc}")
            return
        self.writer.event("sample", step=step, paths=[str(p) for p, _ in made], prompts=[p.prompt for _, p in made])


def _steps(args: TrainArgs, data: TrainData, world: int) -> tuple[int, int, int]:
    """(steps per epoch, epochs, total steps): core.steps' arithmetic, the one `lora-tui steps` showed."""
    length = train_length(len(data), num_processes=world, grad_accum=args.gradient_accumulation_steps,
                          max_train_epochs=args.max_train_epochs, max_train_steps=args.max_train_steps)
    return length.steps_per_epoch, length.epochs, length.total_steps


def _output_dirs(args: TrainArgs, run_dir: Path | None) -> tuple[Path, Path, Path]:
    output = Path(args.output_dir) if args.output_dir else (run_dir / "output" if run_dir else Path("output"))
    if run_dir is not None:
        return output, run_dir / "state", run_dir / "samples"
    return output, output, output / "sample"


class StopRequested(Exception):
    """A stop signal arrived while preparing (latent caching can take minutes): end before step one."""


def prepare(args: TrainArgs, data: TrainData, accelerator: Any, *, seed: int, writer: RunWriter,
            should_stop: Callable[[], bool] | None = None) -> Setup:
    """Load, build and configure everything for the loop; raises TrainError/ModelError on bad input."""
    device = accelerator.device
    weight_dtype = DTYPES[args.mixed_precision]
    vae_dtype = torch.float32 if args.no_half_vae else weight_dtype
    # "lora-tui:tiny-sd15" is its cache folder, built here on first use (args keep the name: events, metadata)
    model_path = builtin.local_model(str(args.pretrained_model_name_or_path), say=writer.say)
    model = load_training_model(model_path, v2=bool(args.v2), v_parameterization=bool(args.v_parameterization),
                                tokenizer_cache_dir=args.tokenizer_cache_dir)
    is_sdxl = bool(getattr(model, "is_sdxl", False))
    text_encoders = list(model.text_encoders) if is_sdxl else [model.text_encoder]
    sdxl.check_settings(args, data, writer, family="sdxl" if is_sdxl else "sd_v2" if model.v2 else "sd_v1")
    for note in [*model.notes, *args.notes]:
        writer.event("warn", message=note)
    if args.xformers or args.mem_eff_attn:
        writer.event("warn", message="xformers / mem_eff_attn: the built-in trainer uses torch's scaled-dot-product "
                                     "attention, which picks the memory-efficient kernel itself")
    train_unet = not args.network_train_text_encoder_only
    train_te = not args.network_train_unet_only
    for module in (model.unet, *text_encoders, model.vae):
        module.requires_grad_(False)
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # casting frozen models is intended; its warning is noise
    # channels_last VAE weights make every conv of the encoder run NHWC: 1.7× faster encoding on the
    # CPU (oneDNN) and the tensor-core layout on CUDA; only float rounding changes (bench/bench_train.py)
    model.vae.to(device, vae_dtype, memory_format=torch.channels_last).eval()
    for encoder in text_encoders:
        encoder.to(device, weight_dtype)
    model.unet.to(device, weight_dtype)
    if device.type == "cuda":
        model.unet.to(memory_format=torch.channels_last)
    elif device.type == "cpu" and not args.torch_compile:  # before the LoRA wraps them: train/model/onednn.py
        onednn.route_frozen_layers([model.unet, *text_encoders])
    diffusers_logging.set_verbosity(verbosity)  # an embedding program (a test) keeps its own setting
    per_epoch, epochs, total = _steps(args, data, accelerator.num_processes)

    if args.cache_latents or args.cache_latents_to_disk:
        def encode(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model.vae.encode(images.to(device, vae_dtype)).latent_dist.sample().float().cpu()

        def progress(_done: int, _total: int) -> None:
            if should_stop is not None and should_stop():
                raise StopRequested

        started = time.monotonic()
        with accelerator.main_process_first():
            stats = data.cache_latents(encode, to_disk=bool(args.cache_latents_to_disk),
                                       batch_size=int(args.vae_batch_size), progress=progress)
        writer.say(f"cached latents: {stats.encoded} encoded, {stats.reused} reused from disk "
                   f"in {time.monotonic() - started:.1f} s")
        for path in stats.damaged:
            writer.event("warn", code="damaged_cache", path=str(path),
                         message=f"latent cache file was damaged (cut short?) and was encoded again: {path}")
            writer.say(f"warning: damaged latent cache {path} was encoded again")
        model.vae.to("cpu")

    if is_sdxl:
        text: Any = sdxl.SdxlTextEncoding(model.tokenizers, model.text_encoders,
                                          max_token_length=args.max_token_length, cache_size=0 if train_te else 8192)
        if sdxl.caches_text_outputs(args):
            sdxl.cache_text_outputs(args, data, model, text, accelerator, writer, should_stop)
    else:
        text = TextEncoding(model.tokenizer, model.text_encoder, max_token_length=args.max_token_length,
                            clip_skip=args.clip_skip, cache_size=0 if train_te else 8192)
    network = _network(args, model, train_unet=train_unet, train_te=train_te, say=writer.say)
    network.apply_to()
    lora_dtype = weight_dtype if (args.full_fp16 or args.full_bf16) else torch.float32
    network.to(device, lora_dtype)
    if args.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
        if train_te:
            for encoder in text_encoders:
                encoder.gradient_checkpointing_enable()
    model.unet.train(bool(args.gradient_checkpointing))
    for encoder in text_encoders:
        encoder.train(train_te and bool(args.gradient_checkpointing))
    if args.torch_compile:
        model.unet = torch.compile(model.unet, backend=args.dynamo_backend)

    lr = float(args.learning_rate)
    groups = network.prepare_optimizer_params(args.text_encoder_lr, args.unet_lr, lr)
    if not any(g["params"] for g in groups):
        raise TrainError("nothing to train: every learning rate is 0 or every LoRA part is switched off",
                         hint="set learning_rate, unet_lr or text_encoder_lr above 0")
    optimizer, described = make_optimizer(args.optimizer_type, groups, lr, optimizer_kwargs(args),
                                          device_type=device.type)
    scheduler = make_scheduler(args.lr_scheduler, optimizer, total_steps=total,
                               warmup=warmup_steps(args.lr_warmup_steps, total),
                               num_cycles=int(args.lr_scheduler_num_cycles),
                               power=float(args.lr_scheduler_power), initial_lr=lr)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    snr = None
    if args.min_snr_gamma:
        alphas = model.noise_scheduler.alphas_cumprod.to(device)
        snr = alphas / (1 - alphas)
    output_dir, state_dir, sample_dir = _output_dirs(args, writer.run_dir)
    output_name = args.output_name
    session_id = random.randint(0, 2**32)
    facts = training_facts(args.replace(seed=seed), data, session_id=session_id, started_at=time.time(),
                           optimizer=described, steps_per_epoch=per_epoch, epochs=epochs, total_steps=total,
                           v2=model.v2, model_hash=model_hashes(Path(model_path)),
                           dataset=dataset_facts(data), sdxl=is_sdxl)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    batch = max(ds.batch_size for ds in data.datasets)
    return Setup(args=args, accelerator=accelerator, writer=writer, model=model, network=network,
                 optimizer=optimizer, scheduler=scheduler, text=text, trainable=trainable, steps_per_epoch=per_epoch,
                 epochs=epochs, total_steps=total, samples_per_step=batch * accelerator.num_processes *
                 int(args.gradient_accumulation_steps), weight_dtype=weight_dtype, vae_dtype=vae_dtype,
                 output_dir=output_dir, state_dir=state_dir, sample_dir=sample_dir, output_name=output_name,
                 base_facts=facts, train_te=train_te, train_unet=train_unet, snr=snr,
                 sdxl=sdxl.SdxlConditioning(text, train_te=train_te) if is_sdxl else None)


def _network(args: TrainArgs, model: Any, *, train_unet: bool, train_te: bool,
             say: Callable[[str], object]) -> LoRANetwork:
    """The LoRA: new, continued from `network_weights`, or shaped by them (`dim_from_weights`)."""
    extra = network_kwargs(args)
    text_encoder = sdxl.network_text_encoders(model) if getattr(model, "is_sdxl", False) else model.text_encoder
    if args.network_weights and args.dim_from_weights:
        return LoRANetwork.from_weights(args.network_weights, text_encoder if train_te else None,
                                        model.unet if train_unet else None)
    network = LoRANetwork(text_encoder, model.unet, dim=int(args.network_dim),
                          alpha=args.network_alpha, conv_dim=extra.get("conv_dim"),
                          conv_alpha=extra.get("conv_alpha"), train_unet=train_unet, train_text_encoder=train_te,
                          dropout=args.network_dropout)
    if args.network_weights:
        info = network.load_weights(args.network_weights)
        say(f"continuing from {args.network_weights} ({info.loaded_keys} tensors)")
    return network

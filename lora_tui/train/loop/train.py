"""The training loop: sd-scripts' train_network.py semantics, written for speed and for the run contract.

One optimizer step = ``gradient_accumulation_steps`` batches per process. Each step: latents (cached
or VAE-encoded), noise (+ noise_offset), a random timestep, the captions through the text encoder
(memoised when it is frozen), the U-Net with the LoRA patched in, MSE against noise or velocity,
weighted by prior_loss_weight and min-SNR, then backward, gradients averaged across processes,
clipped, stepped. Saves, samples, the NaN watchdog, and SIGINT/SIGTERM are handled between steps;
what each step reports (events, curves, the progress line) is ``loop.progress``.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from lora_tui.core.errors import LoraTuiError, TrainError
from lora_tui.train.data.dataset import BatchKey, TrainData, build_dataset, collate_first
from lora_tui.train.loop.args import TrainArgs
from lora_tui.train.loop.events import RunWriter
from lora_tui.train.loop.progress import Progress, report_step, report_unreadable
from lora_tui.train.loop.setup import Setup, StopRequested, prepare
from lora_tui.train.loop.tracking import Tracker, open_tracker
from lora_tui.train.network.saves import TrainState, read_state, restore_rng

OOM_HINT = ("lower train_batch_size, turn on gradient_checkpointing and cache_latents, or lower the resolution")


class ShardedSampler(Sampler[BatchKey]):
    """This process's batches of an epoch: positions rank, rank+world, … wrapped so every process
    gets the same count (accelerate's even_batches), from a local start index for resumes."""

    def __init__(self, data: TrainData, rank: int, world: int) -> None:
        self.data, self.rank, self.world = data, rank, world
        self.epoch, self.start, self.step = 1, 0, 0
        self.grad_accum = max(1, data.grad_accum)

    @property
    def per_process(self) -> int:
        return math.ceil(len(self.data) / self.world)

    def set(self, epoch: int, start: int, step: int) -> None:
        self.epoch, self.start, self.step = epoch, start, step

    def __len__(self) -> int:
        return max(0, self.per_process - self.start)

    def __iter__(self):  # type: ignore[no-untyped-def]
        total = len(self.data)
        for local in range(self.start, self.per_process):
            position = (local * self.world + self.rank) % total
            yield BatchKey(self.epoch, position, self.step + (local - self.start) // self.grad_accum)


class Trainer:
    def __init__(self, args: TrainArgs, run_dir: Path | None, early_signals: list[int] | None = None) -> None:
        self.args = args
        self.run_dir = run_dir
        self.stop_signal: int | None = None
        self.early_signals = early_signals if early_signals is not None else []
        self.writer = RunWriter(None)
        self.last_save: str | None = None
        self.setup: Setup | None = None
        self.tracker = Tracker()

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signal = signum
        signal.signal(signum, signal.SIG_DFL)  # a second one stops at once

    def install_signals(self) -> None:
        """Take over from the early handlers (``__main__.catch_early_signals``); a signal that already
        arrived means stopping, and its second one must still stop at once, so nothing is reinstalled."""
        self._previous_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if not self.early_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        if self.early_signals and self.stop_signal is None:  # also one that came in while installing
            self.stop_signal = self.early_signals[0]
            for sig in (signal.SIGINT, signal.SIGTERM):
                if sig not in self.early_signals:
                    signal.signal(sig, self._on_signal)

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> int:
        """Train; returns the process exit code (0 finished, 130/143 stopped, 1 failed)."""
        from accelerate import Accelerator

        args = self.args
        if args.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise TrainError("mixed_precision fp16 needs a CUDA GPU", hint="use bf16 or no on the CPU")
        # cpu=True on CPU-only machines: accelerate only sets up multi-process CPU (gloo) when told
        accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available())
        self.accelerator = accelerator
        self.writer = RunWriter(self.run_dir, enabled=accelerator.is_main_process)
        self.writer.starting()
        self.install_signals()
        try:
            return self._run(accelerator)
        except torch.cuda.OutOfMemoryError:
            return self._fail("oom", f"CUDA out of memory at step {self.global_step_or_0()}: {OOM_HINT}")
        except LoraTuiError as exc:
            return self._fail(getattr(exc, "code", "error"), str(exc))
        except Exception as exc:
            import traceback

            traceback.print_exc()
            return self._fail("crash", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            self.tracker.close()
            _close_process_group()
            for sig, handler in getattr(self, "_previous_handlers", {}).items():
                signal.signal(sig, handler)  # a caller (a test, an embedding program) gets its own back

    def global_step_or_0(self) -> int:
        return getattr(self, "global_step", 0)

    def _fail(self, code: str, message: str) -> int:
        self.writer.event("error", code=code, message=message,
                          last_good_save=self.last_save, step=self.global_step_or_0())
        self.writer.say(f"error: {message}")
        self.writer.end("failed", message, 1, self.global_step_or_0())
        return 1

    def _run(self, accelerator: Any) -> int:
        args = self.args
        seed = args.seed if args.seed is not None else random.randint(0, 2**32 - 1)
        from accelerate.utils import set_seed

        set_seed(seed)
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self._stopped_early(accelerator):
            return self._end_before_start()
        data = build_dataset(Path(args.dataset_config), seed=seed, args=args.values,
                             prior_loss_weight=float(args.prior_loss_weight),
                             bucket_step_multiple=_bucket_step_multiple(args))
        for warning in data.warnings:
            self.writer.event("warn", message=warning)
            self.writer.say(f"warning: {warning}")
        report_unreadable(self.writer, data.unreadable)
        try:
            setup = prepare(args, data, accelerator, seed=seed, writer=self.writer,
                            should_stop=lambda: self._stopped_early(accelerator))
        except StopRequested:  # Ctrl-C while latents were being cached: no need to wait for the rest
            return self._end_before_start()
        self.setup = setup
        world, rank = accelerator.num_processes, accelerator.process_index
        grad_accum = int(args.gradient_accumulation_steps)
        data.set_max_train_steps(setup.total_steps, grad_accum)
        sampler = ShardedSampler(data, rank, world)
        workers = min(int(args.max_data_loader_n_workers), os.cpu_count() or 1)
        # its own generator: making an iterator draws a seed, which must not shift the training RNG
        # (a resumed run creates its first iterator at a different point than an uninterrupted one)
        loader = DataLoader(data, batch_size=1, sampler=sampler, collate_fn=collate_first, num_workers=workers,
                            persistent_workers=bool(args.persistent_data_loader_workers) and workers > 0,
                            generator=torch.Generator().manual_seed(seed))
        if self._stopped_early(accelerator):
            return self._end_before_start()
        position = TrainState(1, 0, 0, seed)
        if args.resume:
            position = self._resume(Path(args.resume), setup)
        self.global_step = position.step
        self.tracker = open_tracker(args, self.writer, is_main=accelerator.is_main_process)
        self.writer.event("start", total_steps=setup.total_steps, steps_per_epoch=setup.steps_per_epoch,
                          epochs=setup.epochs, batch_size=max(ds.batch_size for ds in data.datasets),
                          num_processes=world, backend="builtin", model=str(args.pretrained_model_name_or_path),
                          resumed_from=str(args.resume) if args.resume else None, resumed_step=position.step,
                          device=str(accelerator.device), seed=seed)
        self.writer.set_status(state="running", total_steps=setup.total_steps, last_step=position.step)
        self.writer.say(f"training {setup.total_steps} steps ({setup.epochs} epochs × {setup.steps_per_epoch}) "
                        f"on {accelerator.device}, {world} process(es)")
        progress = Progress()
        progress.window.append((time.monotonic(), 0))
        if args.sample_at_first and position.step == 0:
            setup.sample(step=0, epoch=0)  # sd-scripts names these e000000
        outcome = self._epochs(accelerator, setup, data, sampler, loader, position, progress, grad_accum)
        return outcome

    def _stopped_early(self, accelerator: Any) -> bool:
        """A stop asked for before the first step (one process: several agree on it after a step)."""
        return self.stop_signal is not None and world_size(accelerator) <= 1

    def _end_before_start(self) -> int:
        signum = int(self.stop_signal or signal.SIGTERM)
        reason = f"stopped by {signal.Signals(signum).name} before the first step; nothing was saved"
        self.writer.say(reason)
        self.writer.end("stopped", reason, 128 + signum, self.global_step_or_0())
        return 128 + signum

    def _resume(self, folder: Path, setup: Setup) -> TrainState:
        weights, opt_state, sched_state, rng, position, info = read_state(folder)
        setup.network.load_weights(weights)
        saved_optimizer, optimizer = info.get("optimizer"), type(setup.optimizer).__name__
        if saved_optimizer and saved_optimizer != optimizer:  # its param groups lack this one's settings
            raise TrainError(f"this state was saved with optimizer {saved_optimizer}, this run uses {optimizer}",
                             path=folder, hint="resume with the optimizer_type it was saved with")
        try:
            setup.optimizer.load_state_dict(opt_state)
            setup.scheduler.load_state_dict(sched_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise TrainError(f"the optimizer/scheduler state does not fit this run: {str(exc).splitlines()[0]}",
                             path=folder, hint="resume with the settings it was saved with (optimizer_type, "
                             "learning rates, network_train_unet_only/text_encoder_only)") from None
        restore_rng(rng)
        self.writer.say(f"resumed from {folder} at step {position.step} (epoch {position.epoch})")
        return position

    def _epochs(self, accelerator: Any, setup: Setup, data: TrainData, sampler: ShardedSampler,
                loader: DataLoader, position: TrainState, progress: Progress, grad_accum: int) -> int:
        args = self.args
        step = position.step
        per_process = sampler.per_process
        params = setup.trainable
        # a resumed state can sit past the planned epochs (a final state, resumed to train longer): go on
        # into further passes until total_steps; each pass makes at least one step, so this bound suffices
        last_epoch = setup.epochs if step >= setup.total_steps else max(setup.epochs,
                                                                        position.epoch + setup.total_steps - step)
        epoch = min(position.epoch, setup.epochs)
        for epoch in range(position.epoch, last_epoch + 1):
            start = position.position if epoch == position.epoch else 0
            if start >= per_process:
                continue
            sampler.set(epoch, start, step)
            progress.epoch_losses = []
            micro_losses: list[float] = []
            samples = 0
            for local, batch in enumerate(loader, start=start):
                loss = setup.loss(batch)
                (loss / grad_accum).backward()
                micro_losses.append(float(loss.detach()))
                samples += len(batch["captions"])
                if (local + 1) % grad_accum and local != per_process - 1:
                    continue
                current = sum(micro_losses) / len(micro_losses)
                flags = torch.tensor([current if math.isfinite(current) else float("nan"),
                                      float(self.stop_signal or 0)], device=accelerator.device)
                setup.all_reduce_grads(params)
                if world_size(accelerator) > 1:
                    flags = accelerator.reduce(flags, reduction="mean")
                    current = float(flags[0])
                if not math.isfinite(current):
                    return self._nan(step + 1, epoch)
                if args.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, float(args.max_grad_norm))
                setup.optimizer.step()
                setup.scheduler.step()
                setup.optimizer.zero_grad(set_to_none=True)
                step += 1
                self.global_step = step
                micro_losses = []
                progress.epoch_losses.append(current)
                progress.window.append((time.monotonic(), samples * world_size(accelerator)))
                samples = 0
                report_step(self.writer, self.tracker, setup, progress, step, epoch, current)
                state = TrainState(epoch, local + 1, step, data.seed)
                if setup.should_save_step(step):
                    self.last_save = setup.save_step(step, epoch, state)
                setup.maybe_sample(step=step, epoch=epoch, epoch_end=False)
                stop = int(float(flags[1]) > 0) if world_size(accelerator) > 1 else int(self.stop_signal is not None)
                if stop:
                    return self._stopped(setup, step, epoch, state)
                if step >= setup.total_steps:
                    break
            if step >= setup.total_steps:
                break
            end_state = TrainState(epoch + 1, 0, step, data.seed)
            if setup.should_save_epoch(epoch):
                self.last_save = setup.save_epoch(step, epoch, end_state)
            setup.maybe_sample(step=step, epoch=epoch, epoch_end=True)
        self._check_sync(setup, step)
        final_state = TrainState(setup.epochs + 1, 0, step, data.seed)
        self.last_save = setup.save_final(step, min(setup.epochs, max(1, epoch)), final_state)
        self.writer.say(f"finished: {self.last_save}")
        self.writer.end("finished", "finished", 0, step)
        return 0

    def _check_sync(self, setup: Setup, step: int) -> None:
        """With several processes, prove the ranks hold the same LoRA (gradients were averaged)."""
        accelerator = self.accelerator
        if world_size(accelerator) <= 1:
            return
        with torch.no_grad():
            checksum = torch.stack([p.double().sum() for p in setup.trainable]).sum().reshape(1)
        sums = accelerator.gather(checksum.to(accelerator.device)).cpu().tolist()
        in_sync = all(abs(x - sums[0]) <= 1e-9 * max(1.0, abs(sums[0])) for x in sums)
        self.writer.event("sync", step=step, ranks=len(sums), in_sync=in_sync, checksums=sums)
        if not in_sync:
            self.writer.event("warn", code="rank_divergence", message=f"LoRA weights differ across ranks: {sums}")

    def _nan(self, step: int, epoch: int) -> int:
        where = f"the last good save is {self.last_save}" if self.last_save else "nothing was saved yet"
        message = (f"loss became nan/inf at step {step} (epoch {epoch}); training stopped and {where}; "
                   "lower the learning rate, or use bf16 or no mixed precision instead of fp16")
        self.writer.event("error", code="nan", message=message, step=step, last_good_save=self.last_save)
        self.writer.say(f"error: {message}")
        self.writer.end("failed", message, 1, step - 1)
        return 1

    def _stopped(self, setup: Setup, step: int, epoch: int, state: TrainState) -> int:
        signum = self.stop_signal or signal.SIGTERM
        self.last_save = setup.save_step(step, epoch, state, force_state=True)
        name = signal.Signals(signum).name
        how = f"lora-tui resume {self.run_dir}" if self.run_dir is not None else f"--resume {setup.last_state}"
        reason = f"stopped by {name} after step {step}; state saved in {setup.last_state}; resume with: {how}"
        self.writer.say(reason)
        self.writer.end("stopped", reason, 128 + int(signum), step)
        return 128 + int(signum)


def _close_process_group() -> None:
    """Tear the process group down before exit: gloo's threads alive at interpreter exit abort it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _bucket_step_multiple(args: TrainArgs) -> int:
    """32 for an SDXL model (sdxl_train_network.py), 64 otherwise; the family is read from the header."""
    from lora_tui.core.family_checks import bucket_step_multiple
    from lora_tui.core.model_family import family_of_value

    return bucket_step_multiple(family_of_value(args.pretrained_model_name_or_path, Path.cwd()))


def world_size(accelerator: Any) -> int:
    return int(accelerator.num_processes)


def train(args: TrainArgs, run_dir: Path | None = None, *, early_signals: list[int] | None = None) -> int:
    """Run one training; every known failure ends as a ``failed`` run with a one-line reason.

    ``early_signals``: the list ``__main__.catch_early_signals`` fills before torch is imported."""
    return Trainer(args, run_dir, early_signals).run()


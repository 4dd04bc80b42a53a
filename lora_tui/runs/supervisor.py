"""The supervisor: the one process that owns a run while it trains (``python -m lora_tui.runs.supervisor RUN_DIR``).

It is started in its own session with no terminal (see ``runs.launch``), so hanging up SSH, closing
the terminal or killing the command that started it never reaches it. It starts the trainer in a
process group of its own with stdout and stderr going straight into train.log: the trainer never
writes into a pipe, so it never depends on a reader staying alive. Every half second it reads what
is new (events.jsonl from the built-in trainer; train.log through the backend's follower for
sd-scripts), samples the GPUs every two seconds, and keeps status.json true. When the trainer exits
it records the end: the trainer's own, or one concluded from the exit code, the stop request, the
watchdogs and the last meaningful lines of the log.

Signals: SIGTERM or SIGINT asks for a graceful stop (the trainer finishes its step and saves);
a second one, or SIGUSR1, stops it at once. SIGHUP is ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lora_tui.core.errors import LoraTuiError
from lora_tui.core.tomlio import parse_plain
from lora_tui.runs import backends, contract, liveness
from lora_tui.runs.gpu import GpuSampler
from lora_tui.runs.logtail import failure_lines
from lora_tui.runs.proctree import ProcessTree

TICK_S = 0.5
STATUS_EVERY_S = 2.0
GPU_EVERY_S = 2.0
NAN_GRACE_S = 60.0
FINAL_RETRY_S = 600.0
OOM_HINT = ("lower train_batch_size, turn on gradient_checkpointing and cache_latents, use mixed precision "
            "(bf16), or lower the resolution")


def read_spec(run_dir: Path) -> dict[str, Any]:
    """The launch facts frozen in run.toml: backend, command, working folder."""
    spec = parse_plain(run_dir / "run.toml", "run.toml").get("run", {})
    if not spec.get("command") or not spec.get("backend"):
        raise LoraTuiError("run.toml names no command or backend", path=run_dir / "run.toml",
                           hint="the run folder is incomplete; start a new run")
    return spec


class Supervisor:
    def __init__(self, run_dir: Path, *, gpu: GpuSampler | None = None, tick: float = TICK_S) -> None:
        self.run_dir = Path(run_dir)
        self.spec = read_spec(self.run_dir)
        self.backend = backends.get(str(self.spec["backend"]))
        self.tick = tick
        self.gpu = gpu
        status, _ = contract.read_status(self.run_dir)
        self.status = contract.new_status(**status)
        self.events = contract.EventLog(self.run_dir)
        self.follower = self.backend.follower()
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_mode: str | None = None   # asked for: graceful | now
        self.stop_sent: str | None = None   # done: graceful | now
        self.stop_by = "a signal"
        self.stop_signum = int(signal.SIGTERM)
        self.trainer_end: dict[str, Any] | None = None
        self.errors: list[dict[str, Any]] = []
        self.nan: dict[str, Any] | None = None
        self._nan_sent_at = 0.0
        self._dirty = True
        self._last_status = 0.0
        self._last_gpu = 0.0
        self._state_written: str | None = None
        self._failed_parts: set[str] = set()
        self.tree = ProcessTree()  # the rest of the launch (see runs.proctree)
        self._last_procs = 0.0

    # -- signals --------------------------------------------------------------------------------
    def _on_stop(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR1 or self.stop_mode is not None:
            self.stop_mode = "now"
        else:
            self.stop_mode = "graceful"
            self.stop_signum = signum  # passed on as it came: Ctrl+C reads "SIGINT", a kill "SIGTERM"
        request = contract.read_stop_request(self.run_dir)
        self.stop_by = (request or {}).get("by") or f"{signal.Signals(signum).name} to the supervisor"

    def _install_signals(self) -> dict[int, Any]:
        previous = {sig: signal.signal(sig, self._on_stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return previous

    # -- status ---------------------------------------------------------------------------------
    def _update(self, **fields: Any) -> None:
        for key, value in fields.items():
            if self.status.get(key) != value:
                self.status[key] = value
                self._dirty = True

    def _write_status(self, force: bool = False) -> bool:
        """True when status.json holds what this supervisor knows (written now, or nothing new)."""
        now = time.monotonic()
        state_changed = self.status.get("state") != self._state_written
        if not (force or state_changed or (self._dirty and now - self._last_status >= STATUS_EVERY_S)):
            return not self._dirty
        try:
            contract.write_status(self.run_dir, self.status)
        except (LoraTuiError, OSError):
            return False  # a full disk: try again next tick; the trainer goes on regardless
        self._dirty, self._last_status, self._state_written = False, now, self.status.get("state")
        return True

    def _emit(self, kind: str, **fields: Any) -> None:
        self.events.append(kind, **fields)
        self._observe({"kind": kind, **fields})

    # -- what the trainer reports ---------------------------------------------------------------
    def _observe(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "start":
            if self.status.get("state") == "starting":
                self._update(state="running")
            self._update(total_steps=event.get("total_steps"), epochs=event.get("epochs"))
        elif kind == "step" and isinstance(event.get("step"), int):
            if self.status.get("state") == "starting":
                self._update(state="running")
            self._update(last_step=event["step"], epoch=event.get("epoch"), loss=event.get("loss"),
                         loss_avg=event.get("loss_avg"))
            if event.get("total_steps"):
                self._update(total_steps=event["total_steps"])
        elif kind == "save":
            key = "last_state" if event.get("type") == "state" else "output"
            self._update(**{key: event.get("path")})
        elif kind == "error":
            self.errors.append(event)
            del self.errors[:-5]
            if event.get("code") == "nan" and self.nan is None and self.backend.progress == "log":
                self.nan = event
        elif kind == "end":
            self.trainer_end = event

    def _read_progress(self, tail: contract.EventTail, log_offset: list[int]) -> None:
        if self.backend.progress == "events":
            for event in tail.read():
                self._observe(event)
            return
        assert self.follower is not None
        try:
            with open(self.run_dir / contract.LOG, "rb") as f:
                f.seek(log_offset[0])
                data = f.read(4 << 20)
        except OSError:
            return
        if data:
            log_offset[0] += len(data)
            for event in self.follower.feed(data, time.time()):
                self._emit(str(event.pop("kind")), **event)

    def _sample_gpu(self) -> None:
        now = time.monotonic()
        if now - self._last_gpu < GPU_EVERY_S:
            return
        self._last_gpu = now
        if self.gpu is None:
            self.gpu = GpuSampler()
            if not self.gpu.available:
                self.events.append("gpu", available=False, reason=self.gpu.reason)
                self._update(gpu=self.gpu.reason)
        if not self.gpu.available:
            return
        pgid = self.child.pid if self.child is not None else None
        total: float = 0.0
        for sample in self.gpu.sample([*([pgid] if pgid else []), *self.tree.procs], run_pgid=pgid):
            self.events.append("gpu", **sample.to_event())
            total += sample.proc_used_mb if sample.proc_used_mb is not None else 0.0
        if total and total > float(self.status.get("peak_vram_mb") or 0):
            self._update(peak_vram_mb=round(total, 1))

    def _track_procs(self) -> None:
        if self.child is None or time.monotonic() - self._last_procs < GPU_EVERY_S:
            return
        self._last_procs = time.monotonic()
        if self.tree.refresh(self.child.pid):
            self._update(procs=self.tree.as_status())

    def _guard(self, fn: Any, *args: Any) -> None:
        """A bug in following or sampling must not end the supervision of a training run: say it once
        in supervisor.log and go on."""
        try:
            fn(*args)
        except Exception as exc:
            name = getattr(fn, "__name__", "step")
            if name not in self._failed_parts:
                self._failed_parts.add(name)
                print(f"lora-tui supervisor: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    # -- stopping -------------------------------------------------------------------------------
    def _signal_trainer(self, signum: int, group: bool) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.child.pid, signum)
            else:
                os.kill(self.child.pid, signum)

    def _handle_stop(self) -> None:
        now = time.monotonic()
        if self.nan is not None and self.stop_mode is None:
            self.stop_mode, self.stop_by, self._nan_sent_at = "graceful", "the NaN watchdog", now
        if self.nan is not None and self.stop_sent == "graceful" and now - self._nan_sent_at > NAN_GRACE_S:
            self.stop_mode = "now"
        if self.stop_mode is None or self.stop_mode == self.stop_sent:
            return
        if self.stop_mode == "graceful":
            self._update(state="stopping", reason=f"stopping: asked by {self.stop_by}")
            self._signal_trainer(self.backend.stop_signal or self.stop_signum, self.backend.stop_group)
        else:
            self._update(state="stopping", reason=f"stopping at once: asked by {self.stop_by}")
            self._signal_trainer(signal.SIGKILL, True)
            self.tree.kill()
        self.stop_sent = self.stop_mode
        self._write_status(force=True)

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise the run to its end; returns the trainer's exit status."""
        previous = self._install_signals()
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():  # a caller in the same process gets its own back
                signal.signal(sig, handler)

    def _run(self) -> int:
        ident = liveness.identify()
        self._update(state="starting", supervised=True, backend=self.backend.name, started_at=time.time(),
                     ended_at=None, exit_code=None, reason=None, **ident.to_json())
        self._write_status(force=True)
        log_path = self.run_dir / contract.LOG
        log_offset = [log_path.stat().st_size if log_path.exists() else 0]
        tail = contract.EventTail(self.run_dir, start_at_end=True)
        env = {**os.environ, **self.backend.env(self.run_dir)}
        argv = [str(a) for a in self.spec["command"]]
        if self.stop_mode is not None:  # asked to stop before anything started
            return self._finish("stopped", f"stopped by {self.stop_by} before the trainer started", 143)
        try:
            with open(log_path, "ab") as log:
                self.child = subprocess.Popen(argv, cwd=str(self.spec.get("cwd") or self.run_dir), env=env,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, preexec_fn=_default_stop_signals)
        except OSError as exc:
            return self._finish("failed", f"cannot start {argv[0]}: {exc.strerror or exc}", 127)
        trainer = liveness.identify(self.child.pid)
        self._update(pgid=self.child.pid, **trainer.to_json("trainer_"))
        self._write_status(force=True)
        code: int | None = None
        while code is None:
            self._guard(self._read_progress, tail, log_offset)
            self._handle_stop()
            self._guard(self._track_procs)
            self._guard(self._sample_gpu)
            self._write_status()
            code = self.child.poll()
            if code is None:
                time.sleep(self.tick)
        self._guard(self._read_progress, tail, log_offset)
        # the rest of the launch: after a clean end its workers exit by themselves; after a kill they train on
        leftover = self.tree.end(30.0 if self.trainer_end is not None else 2.0)
        self._update(procs=[])
        self._guard(self._read_progress, tail, log_offset)
        self._guard(self._finish_follower)
        if leftover and self.trainer_end is None:
            self.events.append("warn", code="orphans", message=f"{leftover} process(es) of the launch outlived "
                               "its main process and were ended")
        return self._conclude(code)

    def _finish_follower(self) -> None:
        if self.follower is not None:
            for event in self.follower.finish(time.time()):
                self._emit(str(event.pop("kind")), **event)

    def _conclude(self, code: int) -> int:
        exit_code = 128 - code if code < 0 else code
        last = int(self.status.get("last_step") or 0)
        if self.trainer_end is not None:
            end = self.trainer_end
            return self._finish(str(end.get("state") or "failed"), str(end.get("reason") or ""),
                                int(end.get("exit_code") if end.get("exit_code") is not None else exit_code),
                                write_end=False)
        saved = self.status.get("output")
        if self.nan is not None:
            good = self.nan.get("last_good_save")
            where = f"the last good save is {good}" if good else "nothing was saved before it"
            return self._finish("failed", f"{self.nan.get('message') or f'loss became nan at step {last}'}; the "
                                f"run was stopped ({where}); lower the learning rate, or use bf16 or no mixed "
                                "precision instead of fp16", exit_code or 1)
        if self.stop_sent:
            how = "at once" if self.stop_sent == "now" else "after its step"
            after = f"; the last save is {saved}" if saved else "; nothing was saved"
            return self._finish("stopped", f"stopped {how} by {self.stop_by} after step {last}{after}", exit_code)
        oom = next((e for e in reversed(self.errors) if e.get("code") == "oom"), None)
        if oom is not None:
            return self._finish("failed", str(oom.get("message") or f"CUDA out of memory: {OOM_HINT}"),
                                exit_code or 1)
        if code < 0:
            name = _signal_name(-code)
            hint = " (the kernel's out-of-memory killer sends SIGKILL: check `dmesg`)" if -code == signal.SIGKILL \
                else ""
            return self._finish("crashed", f"the trainer was killed by {name} after step {last}{hint}", exit_code)
        reason = self._failure_reason()
        if code == 0:
            if self.backend.progress == "log" and self.follower is not None and \
                    not getattr(self.follower, "saw_model_saved", True):
                return self._finish("failed", "sd-scripts exited 0 without saving the model: "
                                    + (reason or "see train.log"), 1)
            return self._finish("finished", "finished", 0)
        return self._finish("failed", reason or f"the trainer exited with code {code}", exit_code)

    def _failure_reason(self) -> str | None:
        if self.follower is not None:
            reason = self.follower.failure_reason()
            if reason:
                return reason
        error = next((e for e in reversed(self.errors) if e.get("message")), None)
        if error is not None:
            return str(error["message"])
        lines = failure_lines(self.run_dir / contract.LOG)
        return " / ".join(lines) if lines else None

    def _finish(self, state: str, reason: str, exit_code: int, *, write_end: bool = True,
                retry_s: float = FINAL_RETRY_S) -> int:
        """Record the end in events.jsonl and status.json; on a full disk, keep trying a while (space
        often comes back when the user deletes something), since a reader can only guess without it."""
        self._update(state=state, reason=reason, exit_code=exit_code, ended_at=time.time())
        deadline = time.monotonic() + retry_s
        ended = not write_end
        while True:
            if not ended:
                ended = self.events.append("end", state=state, reason=reason, exit_code=exit_code,
                                           last_step=int(self.status.get("last_step") or 0))
            if (self._write_status(force=True) and ended) or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        self.events.close()
        if self.gpu is not None:
            self.gpu.close()
        return exit_code


def _default_stop_signals() -> None:
    """In the trainer, before exec: SIGINT and SIGTERM do what the trainer says, even when whoever
    started lora-tui ignored them (a background job of a script ignores SIGINT, and that is inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    detach = "--detach" in argv
    argv = [a for a in argv if a != "--detach"]
    if len(argv) != 1:
        print("usage: python -m lora_tui.runs.supervisor [--detach] RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    if detach:  # fork off the real supervisor; this process only reports whether it took over
        pid = os.fork()
        if pid:
            from lora_tui.runs.launch import wait_until_owned

            os._exit(wait_until_owned(run_dir, pid, 120.0))
    lock = contract.hold_lock(run_dir, wait_s=5.0)  # a `lora-tui stop` may hold it for a moment
    if lock is None:
        print(f"{run_dir}: another supervisor already runs this run", file=sys.stderr)
        return 3
    status, _ = contract.read_status(run_dir)
    if status.get("state") not in (None, "queued"):
        print(f"{run_dir}: the run already started (state {status.get('state')})", file=sys.stderr)
        return 3
    try:
        return Supervisor(run_dir).run()
    except LoraTuiError as exc:
        print(f"lora-tui supervisor: {exc}", file=sys.stderr)
        contract.end_unstarted(run_dir, status, "failed", str(exc), exit_code=2)
        return 2


if __name__ == "__main__":
    sys.exit(main())

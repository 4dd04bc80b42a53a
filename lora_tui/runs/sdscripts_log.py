"""Turn kohya-ss/sd-scripts' console output into run-contract events.

The supervisor starts `train_network.py` with stdout and stderr both going into `train.log` (one file,
not a terminal) and feeds the bytes, as they arrive, to `SdScriptsFollower`. sd-scripts has no machine
readable progress, so everything here is read from what people see in a terminal: the tqdm bar's
counter and `avr_loss`; `print()` lines on stdout (the 'running training' summary, `epoch N/M`,
`saving checkpoint: PATH`); Rich log records on stderr; Python tracebacks, with accelerate's own
`CalledProcessError` traceback after the trainer's. How the bytes become bar draws, records and lines
is ``sdscripts_lines`` (the follower's base class, :class:`ConsoleLines`); this module says what they
mean. The facts about the output both rely on are in ``sdscripts_format``.

Every event is a dict with `"t": now` (the `now` given to the feed()/finish() call that produced it)
and `"kind"`; the supervisor appends them to events.jsonl as they are. Non-finite numbers never reach an
event (JSON has no NaN): an `avr_loss=nan` step has `loss_avg: None` and `loss_avg_raw: "nan"`.

Memory is bounded for a ten-hour log: lines are not kept (only a ring of the last `RECENT_LINES` non-bar
lines and the last few tracebacks; ConsoleLines cuts a line at `MAX_LINE` characters and a Rich record
at `MAX_RECORD_PARTS` continuation lines). Pure stdlib, no torch/textual/rich.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lora_tui.runs.sdscripts_format import (
    BACKEND,
    EPOCH,
    MAX_LINE,
    MAX_PROMPTS,
    MAX_TEXT,
    OOM,
    OOM_ADVICE,
    RECENT_LINES,
    SAMPLE_STEP,
    STATE_LOADED,
    STATE_SAVED,
    SUMMARY,
    english,
)
from lora_tui.runs.sdscripts_lines import ConsoleLines

__all__ = ["MAX_LINE", "RECENT_LINES", "SdScriptsFollower"]  # the limits tests and callers read from here


@dataclass
class _Traceback:
    """The exception line(s) of one Python traceback (frames are not kept)."""

    exception: list[str] = field(default_factory=list)


class SdScriptsFollower(ConsoleLines):
    """Turns sd-scripts' raw train.log bytes, fed as they arrive, into run-contract events.

    `feed(data, now)` accepts any chunking (partial lines, split UTF-8 sequences, a lone \\r at the end);
    `finish(now)` is called once at the end of output. Both return the events produced, oldest first;
    feeding the same bytes in any chunks with the same `now` gives the same events.

    Events (all with `t` and `kind`; readers ignore unknown kinds and fields):
    - `start`: once, when the 'running training' summary is complete: total_steps, steps_per_epoch
      (ceil(batches per epoch / grad accum), as train_network.py computes it), epochs, batch_size (a
      list for several datasets), gradient_accumulation_steps, num_train_images, num_reg_images,
      num_val_images, batches_per_epoch, backend; resume_step/resume_path after `--resume`.
    - `step`: once per new bar counter (a jump of several steps is one event): step, epoch, loss None
      (the bar has no current loss), loss_avg (avr_loss), lr None, total_steps (the bar's total).
    - `save`: step, epoch, path, type 'lora' ('saving checkpoint: PATH') or 'state' (the state folder
      of 'save train state to DIR/train_state.json ...', printed for every state save).
    - `remove`: step, path, type, for 'removing old checkpoint' / 'removing old state'.
    - `sample`: step, epoch, prompts (the 'prompt:' lines of one sampling block), paths [] (not printed).
    - `warn` with code: no_prompt_file, ignored_subset, nan_latents (once each), interrupted (SIGINT).
    - `error` with code: oom (message names the knobs, detail is torch's line), nan (step,
      last_good_save: the last LoRA saved before that step), no_data (sd-scripts exits 0 there),
      traceback (at finish(): message = failure_reason()).
    Attributes give the latest state for status.json and for the supervisor's decisions; `loss_avg` is
    the last avr_loss shown (a float, nan included).
    """

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[str, Any] | None = None
        self.step: int = 0
        self.epoch: int = 0
        self.total_steps: int | None = None
        self.loss_avg: float | None = None
        self.last_save: str | None = None
        self.saw_model_saved: bool = False
        self.nan_at: int | None = None
        self.oom: bool = False
        self.resume_step: int | None = None
        self.resume_path: str | None = None
        self.recent_lines: deque[str] = deque(maxlen=RECENT_LINES)

        self._events: list[dict[str, Any]] = []
        self._now = 0.0
        self._summary: dict[str, Any] = {}
        self._pending: int | None = None  # counter whose step event waits for its avr_loss
        self._pending_loss: float | None = None
        self._pending_loss_text: str | None = None
        self._pending_epoch = 0
        self._saves: list[tuple[int, str]] = []  # (step, path) of LoRA saves, for nan's last_good_save
        self._sample: dict[str, Any] | None = None
        self._tb: _Traceback | None = None
        self._tracebacks: deque[_Traceback] = deque(maxlen=8)
        self._fatal: str | None = None  # a logged failure with no traceback ('No data found', exit code 0)
        self._warned: set[str] = set()
        self._finished = False

    # ------------------------------------------------------------------ feeding

    def feed(self, data: bytes, now: float) -> list[dict[str, Any]]:
        """Read more output; return the events it completes."""
        self._now = now
        self._read(data)
        return self._take()

    def finish(self, now: float) -> list[dict[str, Any]]:
        """End of output: read the trailing partial line and close whatever is still open."""
        self._now = now
        if self._finished:
            return []
        self._finished = True
        self._read_tail()
        self._end_sample()
        self._close_traceback()
        self._flush_step()
        reason = self.failure_reason()
        if reason is not None and not self.oom and self._fatal is None:
            if reason.startswith("KeyboardInterrupt"):
                self._emit("warn", code="interrupted", message="training interrupted (SIGINT): " + reason)
            else:
                self._emit("error", code="traceback", message=reason)
        return self._take()

    def failure_reason(self) -> str | None:
        """The line(s) that say why the trainer failed, or None.

        That is the exception of the last traceback printed after the last 'model saved.', skipping
        accelerate's own `subprocess.CalledProcessError` wrapper (whose only news is the exit status);
        or a failure sd-scripts logs without a traceback ('No data found', which exits with code 0).
        """
        tracebacks = list(self._tracebacks)
        if self._tb is not None and self._tb.exception:
            tracebacks.append(self._tb)
        wrapper: str | None = None
        for tb in reversed(tracebacks):
            text = "\n".join(tb.exception)
            if text.startswith(("subprocess.CalledProcessError", "CalledProcessError")):
                wrapper = wrapper or text
                continue
            return text
        if self._fatal is not None:
            return self._fatal
        if wrapper is not None:
            died = re.search(r"died with <Signals\.(\w+)", wrapper)
            if died:
                return f"the training process died with {died.group(1)} (no traceback)"
        return None

    # ------------------------------------------------------------------ lines

    def _take(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events.append({"t": self._now, "kind": kind, **fields})

    def _on_record(self, text: str, level: str) -> None:
        if text:
            self.recent_lines.append(text)
        self._message(text, level)

    # ------------------------------------------------------------------ meaning

    def _plain(self, line: str) -> None:
        """A line that is neither the main bar nor a Rich record: prints, tracebacks, warnings."""
        if self._traceback_line(line):
            return
        stripped = line.strip()
        if not stripped:
            return
        self.recent_lines.append(stripped[:MAX_TEXT])
        if line.startswith("  ") and self._summary_line(stripped):
            return
        m = EPOCH.match(stripped)
        if m:
            self._end_sample()
            self.epoch = int(m.group(1))
            return
        self._message(stripped, None)

    def _summary_line(self, stripped: str) -> bool:
        for key, pattern in SUMMARY.items():
            m = pattern.match(stripped)
            if m:
                value = m.group(1)
                if key == "batch_size":
                    sizes = [int(v) for v in value.replace(" ", "").split(",") if v]
                    self._summary[key] = sizes[0] if len(sizes) == 1 else sizes
                else:
                    self._summary[key] = int(value)
                if key == "total_steps":
                    self._start()
                return True
        return False

    def _start(self) -> None:
        s = self._summary
        self._summary = {}
        summary = {k: s.get(k) for k in ("num_train_images", "num_reg_images", "batches_per_epoch", "epochs",
                                         "batch_size", "grad_accum", "total_steps")}
        summary["num_val_images"] = s.get("num_val_images")
        self.summary = summary
        self.total_steps = summary["total_steps"]
        batches, accum = summary["batches_per_epoch"], summary["grad_accum"] or 1
        # train_network.py: num_update_steps_per_epoch = ceil(len(train_dataloader) / gradient_accumulation_steps)
        steps_per_epoch = math.ceil(batches / accum) if batches is not None else None
        extra: dict[str, Any] = {}
        if self.resume_step is not None:
            extra = {"resume_step": self.resume_step, "resume_path": self.resume_path}
        self._emit("start", backend=BACKEND, total_steps=summary["total_steps"], steps_per_epoch=steps_per_epoch,
                   epochs=summary["epochs"], batch_size=summary["batch_size"], gradient_accumulation_steps=accum,
                   num_train_images=summary["num_train_images"], num_reg_images=summary["num_reg_images"],
                   num_val_images=summary["num_val_images"], batches_per_epoch=batches, **extra)

    def _message(self, text: str, level: str | None) -> None:
        """A log message (a Rich record's text, or a plain line) that may mean something."""
        if self._check_oom(text):
            return
        c = text[:1]
        if c == "s":
            if text.startswith("saving checkpoint: "):
                self._end_sample()
                path = text[len("saving checkpoint: "):].strip()
                self.last_save = path
                self._saves.append((self.step, path))
                del self._saves[:-16]
                self._emit("save", step=self.step, epoch=self.epoch, path=path, type="lora")
            elif text.startswith("save train state to "):
                m = STATE_SAVED.match(text)
                if m:
                    self._end_sample()
                    self._emit("save", step=self.step, epoch=self.epoch, path=m.group(1), type="state")
            elif text.startswith(("saving state at", "saving last state")):
                self._end_sample()
        elif c == "r":
            if text.startswith("removing old checkpoint: "):
                self._emit("remove", step=self.step, path=text[len("removing old checkpoint: "):].strip(),
                           type="lora")
            elif text.startswith("removing old state: "):
                self._emit("remove", step=self.step, path=text[len("removing old state: "):].strip(), type="state")
            elif text.startswith("resume training from local state: "):
                self.resume_path = text[len("resume training from local state: "):].strip()
        elif c == "g" and text.startswith("generating sample images at step"):
            self._end_sample()
            m = SAMPLE_STEP.search(text)
            self._sample = {"step": int(m.group(1)) if m else self.step, "prompts": []}
        elif c == "p" and text.startswith("prompt: "):
            if self._sample is not None and len(self._sample["prompts"]) < MAX_PROMPTS:
                self._sample["prompts"].append(text[len("prompt: "):].strip())
        elif c == "m" and text.rstrip() == "model saved.":
            self._end_sample()
            self.saw_model_saved = True
            self._tracebacks.clear()
            self._fatal = None
        elif c == "N":
            if text.startswith("No prompt file"):
                self._sample = None
                self._warn_once("no_prompt_file", english(text))
            elif text.startswith("No data found"):
                self._fatal = english(text)
                self._emit("error", code="no_data", message=self._fatal)
            elif text.startswith("NaN found in latents"):
                self._warn_once("nan_latents", text)
        elif c == "i" and text.startswith("ignore subset with image_dir="):
            self._warn_once("ignored_subset:" + text[:300], english(text))
        elif c == "l" and text.startswith("load train state from "):
            m = STATE_LOADED.match(text)
            if m:
                self.resume_step = int(m.group(2))
                self.resume_path = self.resume_path or m.group(1)

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned or len(self._warned) > 256:
            return
        self._warned.add(key)
        self._emit("warn", code=key.partition(":")[0], message=message)

    def _check_oom(self, text: str) -> bool:
        if self.oom or not any(s in text for s in OOM):
            return False
        self.oom = True
        self._emit("error", code="oom", step=self.step, message=OOM_ADVICE, detail=text[:MAX_TEXT])
        return True

    def _end_sample(self) -> None:
        sample, self._sample = self._sample, None
        if sample is not None:
            self._emit("sample", step=sample["step"], epoch=self.epoch, prompts=sample["prompts"], paths=[])

    # ------------------------------------------------------------------ tracebacks

    def _traceback_line(self, line: str) -> bool:
        """Follow Python tracebacks; True when the line belonged to one."""
        if line.startswith("Traceback (most recent call last):"):
            self._end_sample()
            self._close_traceback()
            self._tb = _Traceback()
            self.recent_lines.append(line)
            return True
        tb = self._tb
        if tb is None:
            return False
        if not tb.exception:
            if not line.strip() or line.startswith((" ", "\t")):
                return True  # frames and source lines
            tb.exception.append(line.strip()[:MAX_TEXT])
            self.recent_lines.append(line.strip()[:MAX_TEXT])
            self._check_oom(line)
            return True
        # The message goes on only while its last line ends with ':' ('... the following error:' then the
        # error): other output (a Rich record, a print) may follow a traceback directly.
        stripped = line.strip()
        if not stripped or not tb.exception[-1].endswith(":") or len(tb.exception) >= 4:
            self._close_traceback()
            return False
        tb.exception.append(stripped[:MAX_TEXT])
        self.recent_lines.append(stripped[:MAX_TEXT])
        self._check_oom(line)
        return True

    def _close_traceback(self) -> None:
        tb, self._tb = self._tb, None
        if tb is not None and tb.exception:
            self._tracebacks.append(tb)

    # ------------------------------------------------------------------ the bar

    def _bar(self, m: re.Match[str]) -> None:
        """One draw of the main bar (the hot path: two per step for the whole run)."""
        counter = int(m.group(1))
        self.total_steps = int(m.group(2))
        inside = m.group(3)  # '00:22<00:22,  7.40s/it, avr_loss=1.17' (postfix keys sorted by tqdm)
        at = inside.find("avr_loss=")
        loss_text: str | None = None
        loss: float | None = None
        if at >= 0 and (at == 0 or inside[at - 1] in ", "):
            end = inside.find(",", at)
            loss_text = (inside[at + 9:] if end < 0 else inside[at + 9:end]).strip()
            try:
                loss = float(loss_text)
            except ValueError:
                loss_text = None
        if self._sample is not None:
            self._end_sample()
        if self._pending is not None and counter == self._pending:
            if loss_text is not None:
                self._pending_loss, self._pending_loss_text = loss, loss_text
            self._flush_step()
        elif counter > self.step or (self._pending is None and counter < self.step):
            if self._pending is not None:
                self._flush_step()
            self.step = counter
            self._pending = counter
            self._pending_epoch = self.epoch
            self._pending_loss, self._pending_loss_text = loss, loss_text
        elif loss is not None:
            self.loss_avg = loss
        if loss is not None and loss - loss != 0.0 and self.nan_at is None:  # nan or ±inf
            self._flush_step()
            self.nan_at = counter
            good = [path for step, path in self._saves if step < counter]
            self._emit("error", code="nan", step=counter, last_good_save=good[-1] if good else None,
                       message=f"avr_loss became {loss_text} at step {counter}")

    def _flush_step(self) -> None:
        step, self._pending = self._pending, None
        if step is None:
            return
        loss, text = self._pending_loss, self._pending_loss_text
        if loss is not None:
            self.loss_avg = loss
        event: dict[str, Any] = {"t": self._now, "kind": "step", "step": step, "epoch": self._pending_epoch,
                                 "loss": None, "loss_avg": loss, "lr": None, "total_steps": self.total_steps}
        if loss is not None and loss - loss != 0.0:  # JSON has no NaN/Infinity
            event["loss_avg"] = None
            event["loss_avg_raw"] = text
        self._events.append(event)

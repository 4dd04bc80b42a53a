"""One captioning run: pick the images, run the model batch by batch, write through the journal.

Captions are written as they are made, by a writer thread, each group as a journal edit; at the end
(also after Ctrl-C, SIGTERM or SIGHUP, or a failure) those edits are combined into one, so one undo takes the whole run
back. Every caption written gets the "needs-review" mark. A process killed outright (kill -9) leaves
the groups it finished as separate, complete undo steps.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lora_tui.caption import compose, loader
from lora_tui.caption.progress import Reporter
from lora_tui.core.journal import Change, Journal
from lora_tui.core.project import Project, Subset
from lora_tui.core.review import NEEDS_REVIEW, ReviewMarks
from lora_tui.core.scan import ImageRecord, caption_target

Target = tuple[Subset, ImageRecord]

# The writer gathers captions for up to GROUP_WAIT_S (or GROUP_MAX of them) per journal edit. An edit
# has a fixed cost (two journal commits, the lock, a folder sync: ~3 ms of CPU) on top of ~0.15 ms a
# caption, so a group per batch of 8 cost 0.45 ms a caption, 16 0.23 ms, 64 0.18 ms. But whatever is
# still gathered when the model finishes is written after it, on the user's clock: groups of 64 left
# ~25 ms of writing after the last batch of a 64-image run (a quarter of the pipeline's overhead), 16
# leave ~6 ms. The TUI sees captions land within half a second when they come slowly (bench/RESULTS.md).
GROUP_MAX = 16
GROUP_WAIT_S = 0.5


# Signals that stop a run the way Ctrl-C does: `kill`, systemd and `timeout` send SIGTERM, a closed
# terminal SIGHUP. Left at their default they killed the process between two groups, leaving the run
# as a dozen undo steps of 16 captions each.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) taken like Ctrl-C; ``signum`` says which, for the exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt for the run (main thread only; a signal whose
    handler is not the default, e.g. SIGHUP under ``nohup``, is left as the caller set it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is signal.SIG_DFL:
                signal.signal(sig, handler)


@contextlib.contextmanager
def _no_second_interrupt() -> Iterator[None]:
    """Ignore SIGINT (and SIGTERM/SIGHUP while they would interrupt) while finishing (main thread
    only; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, *(s for s in STOP_SIGNALS if signal.getsignal(s) is _interrupt)]
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Captioner(Protocol):
    name: str
    forward_s: float  # seconds spent in the model (the bench compares the rest against it)

    def prepare(self, path: str) -> Any: ...

    def run(self, inputs: Sequence[Any]) -> list[list[str]]: ...

    def close(self) -> None: ...  # what the run set process-wide (torch's thread count) back


@dataclass
class Plan:
    """What a run will do: ``todo`` to caption, ``kept`` that already have a caption, ``skipped`` with why."""

    todo: list[Target] = field(default_factory=list)
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def plan(targets: Sequence[Target], mode: str, limit: int | None = None) -> Plan:
    """Images to caption in ``mode``; one caption file shared by several images is captioned once."""
    result = Plan()
    seen: set[Path] = set()
    for subset, record in targets:
        why = compose.skip_reason(record, mode)
        if why == "":
            result.kept += 1
            continue
        if why is not None:
            result.skipped.append((record.path_text, why))
            continue
        target = caption_target(subset, record)
        if target in seen:
            continue
        seen.add(target)
        result.todo.append((subset, record))
    if limit is not None:
        result.todo = result.todo[:limit]
    return result


@dataclass
class Summary:
    written: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): unreadable, or left alone
    done: int = 0
    interrupted: bool = False
    signal: int = 0  # what interrupted it: SIGINT (Ctrl-C, or the reader gone), SIGTERM, SIGHUP
    seconds: float = 0.0
    forward_s: float = 0.0
    undo_steps: int = 0


class Writer:
    """Applies captions through the journal on its own thread, in groups (GROUP_MAX, GROUP_WAIT_S)."""

    def __init__(self, project: Project, label: str,
                 on_written: Callable[[list[str], list[str]], None] | None = None) -> None:
        self.journal = Journal.for_project(project, command="lora-tui caption")
        self.marks = ReviewMarks(project.root)
        self.label = label
        self.images: dict[Path, str] = {}  # caption file → its image (for the review marks)
        self.on_written = on_written
        self.seqs: list[int] = []
        self.written = 0
        self.left_alone: list[tuple[Path, str]] = []
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[tuple[Change, str]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="caption-writer", daemon=True)
        self._thread.start()

    def put(self, change: Change, image: str) -> None:
        self.put_many([(change, image)])

    def put_many(self, items: list[tuple[Change, str]]) -> None:
        """Queue a batch's captions in one hand-over (one wake-up of the writer, not one per caption)."""
        if self.error is not None:
            raise self.error
        if items:
            self._queue.put(items)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            changes: list[tuple[Change, str]] = list(first or [])
            stop = first is None
            deadline = time.monotonic() + GROUP_WAIT_S
            while not stop and len(changes) < GROUP_MAX:
                left = deadline - time.monotonic()
                try:
                    more = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = more is None
                changes.extend(more or [])
            self.images.update((c.path, image) for c, image in changes)
            if changes and self.error is None:
                try:
                    self._apply(changes)
                except BaseException as exc:  # reported by put() and close(); later captions are not written
                    self.error = exc

    def _apply(self, items: list[tuple[Change, str]]) -> None:
        """Mark, then write: a process killed between the two (kill -9) leaves a mark on an image whose
        caption did not land (the review lists only captioned images) rather than a model's caption
        without its mark; the marks of captions left alone are taken back unless they were there before."""
        changes = [c for c, _ in items]
        self.marks.reload()
        fresh = {self.images[c.path] for c in changes if not self.marks.has(self.images[c.path], NEEDS_REVIEW)}
        self.marks.set([self.images[c.path] for c in changes], NEEDS_REVIEW, True)
        try:
            outcome = self.journal.apply(self.label, changes)
        except BaseException:  # nothing written (another writer held the captions, Ctrl-C): marks back
            with contextlib.suppress(Exception):
                self.marks.set(fresh, NEEDS_REVIEW, False)
            raise
        left = {c.path for c in changes} if outcome is None else {Path(p) for p, _ in outcome.left_alone}
        unmark = [self.images[c.path] for c in changes if c.path in left and self.images[c.path] in fresh]
        if unmark:
            self.marks.set(unmark, NEEDS_REVIEW, False)
        if outcome is None:
            return
        if outcome.seq is not None and outcome.applied:
            self.seqs.append(outcome.seq)
        self.left_alone.extend(outcome.left_alone)
        done = [c for c in changes if c.path not in left]
        self.written += len(done)
        images = [self.images[c.path] for c in done]
        if self.on_written is not None:
            self.on_written(images, [str(c.path) for c in done])

    def close(self, final_label: Callable[[int], str]) -> int:
        """Write what is queued, then make the run one undo step; returns the undo steps it takes."""
        self._queue.put(None)
        self._thread.join()
        steps = len(self.seqs)
        if steps:  # one edit is only renamed to the run's final label
            steps -= self.journal.combine(self.seqs, final_label(self.written)) - 1
        if self.error is not None:
            raise self.error
        return steps


def caption_images(project: Project, todo: Sequence[Target], captioner: Captioner, *, mode: str,
                   prefix: str = "", batch_size: int = 8, reporter: Reporter, dry_run: bool = False,
                   workers: int | None = None) -> Summary:
    """Caption ``todo``; returns what happened. Ctrl-C, SIGTERM and SIGHUP stop after writing what finished."""
    with _stop_signals_interrupt():
        return _caption_images(project, todo, captioner, mode=mode, prefix=prefix, batch_size=batch_size,
                               reporter=reporter, dry_run=dry_run, workers=workers)


def _caption_images(project: Project, todo: Sequence[Target], captioner: Captioner, *, mode: str, prefix: str,
                    batch_size: int, reporter: Reporter, dry_run: bool, workers: int | None) -> Summary:
    summary = Summary()
    total = len(todo)
    start = time.perf_counter()
    writer = None if dry_run else Writer(project, f"auto-caption with {captioner.name} ({mode})", reporter.written)
    reporter.start(total, model=captioner.name, mode=mode, dry_run=dry_run)
    batches = loader.batches(todo, lambda t: captioner.prepare(t[1].path_text), batch_size, workers=workers,
                             describe=lambda t: t[1].path_text)
    made: list[tuple[Change, str]] = []  # captions of the batch in hand, not yet queued for writing
    try:
        for batch in batches:
            for item in batch:
                if item.error:
                    summary.failed.append((item.item[1].path_text, item.error))
                    reporter.skip(item.item[1].path_text, item.error)
            ready = [item for item in batch if item.error is None]
            outputs = captioner.run([item.data for item in ready]) if ready else []
            for item, output in zip(ready, outputs):
                subset, record = item.item
                if not output:
                    why = f"{record.path_text}: the model gave no caption"
                    summary.failed.append((record.path_text, why))
                    reporter.skip(record.path_text, why)
                    continue
                change = compose.new_text(subset, record, output, mode, prefix)
                if change is None:
                    summary.unchanged += 1
                    continue
                text = change.after or ""
                reporter.caption(record.path_text, str(change.path), text.splitlines()[0] if text else "")
                if dry_run:
                    before = (change.before or "(no caption)").strip().splitlines() or ["(empty)"]
                    reporter.sample(f"{record.path_text}\n    - {before[0]}\n    + {text.strip()}")
                else:
                    made.append((change, record.path_text))
            if writer is not None:
                writer.put_many(made)
                made = []
            summary.done += len(batch)
            elapsed = time.perf_counter() - start
            rate = summary.done / elapsed if elapsed > 0 else None
            reporter.progress(summary.done, total, rate, (total - summary.done) / rate if rate else None)
            if reporter.lost:  # nobody reads the progress any more: stop as if interrupted
                raise KeyboardInterrupt
        elapsed = time.perf_counter() - start
        reporter.progress(summary.done, total, summary.done / elapsed if elapsed > 0 else None, 0.0, final=True)
    except KeyboardInterrupt as exc:
        summary.interrupted = True
        summary.signal = getattr(exc, "signum", signal.SIGINT)
    finally:
        with _no_second_interrupt():  # a second Ctrl-C must not cut the last writes or the undo step short
            batches.close()
            if writer is not None:
                if made and writer.error is None:  # Ctrl-C before its batch's hand-over: finished, so written
                    writer.put_many(made)
                summary.undo_steps = writer.close(lambda n: f"auto-caption {n} images with {captioner.name} ({mode})")
                summary.written = writer.written
                summary.failed.extend((str(p), f"{p}: {why}") for p, why in writer.left_alone)
        summary.seconds = time.perf_counter() - start
        summary.forward_s = captioner.forward_s
    return summary

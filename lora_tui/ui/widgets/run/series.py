"""Bounded time series for the monitor's plots (plain Python: no Textual, testable on its own).

A run can write millions of step events; a plot is at most a couple of hundred cells wide. A
:class:`Series` keeps at most ``cap`` points whatever the run's length: when it fills up, adjacent
points are merged pairwise (their mean), and from then on each stored point stands for twice as many
incoming ones. Memory and drawing cost stay constant; the whole run stays covered, start to now.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_CAP = 512
EMA_ALPHA = 0.05  # per step: about the last 40 steps weigh most


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Series:
    """(x, y) points, at most ``cap`` of them, each the mean of ``stride`` consecutive inputs."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap = max(4, cap - cap % 2)
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.stride = 1
        self._sum_y = 0.0
        self._count = 0
        self._pending_x = 0.0
        self.version = 0  # bumped on every change: a plot redraws only when this moved

    def __len__(self) -> int:
        return len(self.xs)

    def add(self, x: float, y: Any, weight: int = 1) -> None:
        """Add one input (``weight`` inputs' worth when it is itself a mean); non-finite ys are skipped."""
        value = _finite(y)
        if value is None:
            return
        self._sum_y += value * weight
        self._count += weight
        self._pending_x = float(x)
        if self._count < self.stride:
            self.version += 1
            return
        self.xs.append(float(x))
        self.ys.append(self._sum_y / self._count)
        self._sum_y, self._count = 0.0, 0
        if len(self.xs) >= self.cap:
            self._halve()
        self.version += 1

    def _halve(self) -> None:
        xs, ys = self.xs, self.ys
        self.xs = [xs[i + 1] for i in range(0, len(xs) - 1, 2)]
        self.ys = [(ys[i] + ys[i + 1]) / 2 for i in range(0, len(ys) - 1, 2)]
        self.stride *= 2

    def points(self) -> tuple[list[float], list[float]]:
        """The stored points plus the partial bucket being filled (so the newest step shows)."""
        if self._count:
            return [*self.xs, self._pending_x], [*self.ys, self._sum_y / self._count]
        return self.xs, self.ys

    @property
    def last(self) -> float | None:
        ys = self.points()[1]
        return ys[-1] if ys else None


class LossSeries:
    """Raw loss and its exponential moving average, both bounded."""

    def __init__(self, cap: int = DEFAULT_CAP, alpha: float = EMA_ALPHA) -> None:
        self.raw = Series(cap)
        self.ema = Series(cap)
        self.alpha = alpha
        self._ema: float | None = None
        self.last_x: float | None = None
        self.average_only: bool | None = None  # True: the trainer reports only a running average

    @property
    def version(self) -> int:
        return self.raw.version

    def add(self, step: float, loss: Any, weight: int = 1) -> None:
        """One step's loss (or the mean of ``weight`` steps', from a sampled history)."""
        value = _finite(loss)
        if value is None:
            return
        if self.last_x is not None and step <= self.last_x:
            return  # a resumed run repeats steps; the plot's x stays ordered
        self.last_x = step
        a = 1.0 - (1.0 - self.alpha) ** max(1, weight)
        self._ema = value if self._ema is None else self._ema + a * (value - self._ema)
        self.raw.add(step, value, weight)
        self.ema.add(step, self._ema, weight)


class LrSeries:
    """One bounded series per parameter group (``unet``, ``text_encoder``, …)."""

    def __init__(self, cap: int = DEFAULT_CAP, max_groups: int = 6) -> None:
        self.cap, self.max_groups = cap, max_groups
        self.groups: dict[str, Series] = {}
        self.last_x: float | None = None

    @property
    def version(self) -> int:
        return sum(s.version for s in self.groups.values())

    def add(self, step: float, lr: Any, weight: int = 1) -> None:
        if not isinstance(lr, dict) or (self.last_x is not None and step <= self.last_x):
            return
        self.last_x = step
        for name, value in lr.items():
            series = self.groups.get(str(name))
            if series is None:
                if len(self.groups) >= self.max_groups:
                    continue
                series = self.groups[str(name)] = Series(self.cap)
            series.add(step, value, weight)


class GpuSeries:
    """GPU memory in use over time (seconds since the first sample), and the run's own share."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.used = Series(cap)
        self.mine = Series(cap)
        self.t0: float | None = None

    @property
    def version(self) -> int:
        return self.used.version + self.mine.version

    def add(self, event: dict[str, Any]) -> None:
        t = _finite(event.get("t"))
        used = _finite(event.get("used_mb"))
        if t is None or used is None:
            return
        if self.t0 is None:
            self.t0 = t
        self.used.add(t - self.t0, used / 1024)
        mine = _finite(event.get("proc_used_mb"))
        if mine is not None:
            self.mine.add(t - self.t0, mine / 1024)


class RunSeries:
    """Everything the monitor plots, fed from history first, then from each new event."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.loss = LossSeries(cap)
        self.lr = LrSeries(cap)
        self.gpu = GpuSeries(cap)

    @property
    def version(self) -> int:
        return self.loss.version + self.lr.version + self.gpu.version

    def _loss_of(self, record: dict[str, Any]) -> float | None:
        """The step's loss; where the trainer reports only a running average (sd-scripts' avr_loss in
        its progress bar), that average, and the plot says so."""
        loss = _finite(record.get("loss"))
        if loss is not None:
            self.loss.average_only = False
            return loss
        if self.loss.average_only is False:
            return None  # this trainer reports each step's loss: a missing one is a NaN step, not plotted
        average = _finite(record.get("loss_avg"))
        if average is not None:
            self.loss.average_only = True
        return average

    def add_history(self, points: list[dict[str, Any]], total_steps: int | None = None) -> None:
        """Points of :func:`lora_tui.runs.reader.loss_history` (each the mean of a few steps)."""
        previous = 0
        for point in points:
            step = point.get("step")
            if not isinstance(step, int):
                continue
            weight = max(1, step - previous)
            previous = step
            self.loss.add(step, self._loss_of(point), weight)
            self.lr.add(step, point.get("lr"), weight)

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "step" and isinstance(event.get("step"), int):
            self.loss.add(event["step"], self._loss_of(event))
            self.lr.add(event["step"], event.get("lr"))
        elif kind == "gpu" and event.get("available") is not False:
            self.gpu.add(event)

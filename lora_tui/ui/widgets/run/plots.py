"""The monitor's plots: loss (raw + EMA), learning rate per group, GPU memory over time.

Drawn by textual-plotext (plotext's braille/block canvas in a Textual widget) from the bounded
series of :mod:`.series`. A plot is rebuilt only when its data moved (the series' version) and at
most as often as the screen's timer asks: rendering is the expensive part, never reading events.
"""

from __future__ import annotations

import math
from typing import Any

from textual_plotext import PlotextPlot

from lora_tui.ui.widgets.run.series import GpuSeries, LossSeries, LrSeries, Series

RAW_COLOR = "gray"
EMA_COLOR = "orange"
LR_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def _thin(series: Series, width: int) -> tuple[list[float], list[float]]:
    """At most one point per column: more cannot be told apart and only costs drawing time."""
    xs, ys = series.points()
    limit = max(8, width)
    if len(xs) <= limit:
        return xs, ys
    step = len(xs) / limit
    idx = [min(len(xs) - 1, int(i * step)) for i in range(limit)] + [len(xs) - 1]
    return [xs[i] for i in idx], [ys[i] for i in idx]


class RunPlot(PlotextPlot):
    """A plot that redraws from its series only when they changed since the last draw."""

    DEFAULT_CSS = "RunPlot { height: 2fr; min-height: 6; }"

    def __init__(self, title: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plot_title = title
        self._drawn: tuple[int, int, int] | None = None
        self.empty_text = "no data yet"

    def draw(self, version: int, force: bool = False) -> bool:
        """Rebuild the figure if ``version`` or the size moved; returns whether it did."""
        key = (version, self.size.width, self.size.height)
        if not force and key == self._drawn:
            return False
        self._drawn = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.plot_title)
        self.fill(plt, max(8, self.size.width - 10))
        self.refresh()
        return True

    def fill(self, plt: Any, width: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class LossPlot(RunPlot):
    def __init__(self, series: LossSeries, **kwargs: Any) -> None:
        super().__init__("loss (raw, EMA) by step", **kwargs)
        self.series = series

    def fill(self, plt: Any, width: int) -> None:
        xs, ys = _thin(self.series.raw, width)
        if not xs:
            plt.title("loss: no steps yet")
            return
        averaged = bool(self.series.average_only)
        if averaged:
            plt.title("average loss by step (the trainer reports no per-step loss), EMA")
        plt.scatter(xs, ys, color=RAW_COLOR, label="average" if averaged else "raw", marker="braille")
        exs, eys = _thin(self.series.ema, width)
        plt.plot(exs, eys, color=EMA_COLOR, label="EMA", marker="braille")
        plt.xlabel("step")


class LrPlot(RunPlot):
    DEFAULT_CSS = "LrPlot { height: 1fr; max-height: 10; min-height: 5; }"

    def __init__(self, series: LrSeries, **kwargs: Any) -> None:
        super().__init__("learning rate by group", **kwargs)
        self.series = series

    def fill(self, plt: Any, width: int) -> None:
        if not self.series.groups:
            plt.title("learning rate: none reported (yet)")
            return
        top = max((max(s.points()[1], default=0.0) for s in self.series.groups.values()), default=0.0)
        exponent = math.floor(math.log10(top)) if top > 0 else 0
        scale = 10.0 ** -exponent  # axis labels like 1.0 … 5.0 (× 1e-4), not 0.000100
        if exponent:
            plt.title(f"learning rate by group (× 1e{exponent})")
        for i, (name, series) in enumerate(self.series.groups.items()):
            xs, ys = _thin(series, width)
            if xs:
                plt.plot(xs, [y * scale for y in ys], color=LR_COLORS[i % len(LR_COLORS)], label=name,
                         marker="braille")
        plt.xlabel("step")


class GpuPlot(RunPlot):
    DEFAULT_CSS = "GpuPlot { height: 1fr; max-height: 9; min-height: 5; }"

    def __init__(self, series: GpuSeries, total_gb: float | None = None, **kwargs: Any) -> None:
        super().__init__("GPU memory (GB) over time (s)", **kwargs)
        self.series = series
        self.total_gb = total_gb

    def fill(self, plt: Any, width: int) -> None:
        xs, ys = _thin(self.series.used, width)
        if not xs:
            plt.title("GPU memory: no samples")
            return
        plt.plot(xs, ys, color="cyan", label="used", marker="braille")
        mxs, mys = _thin(self.series.mine, width)
        if mxs:
            plt.plot(mxs, mys, color="orange", label="this run", marker="braille")
        if self.total_gb and math.isfinite(self.total_gb):
            plt.ylim(0, self.total_gb)

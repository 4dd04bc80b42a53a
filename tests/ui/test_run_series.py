"""The monitor's plot buffers: bounded whatever the run's length, covering it from its first step."""

from __future__ import annotations

import math

from lora_tui.ui.widgets.run.plots import _thin
from lora_tui.ui.widgets.run.series import LossSeries, Series


def test_a_series_stays_bounded_and_covers_the_whole_run() -> None:
    series = Series(cap=512)
    for x in range(1, 1_000_001):
        series.add(x, 1.0)
    xs, ys = series.points()
    assert len(series) < 512 and len(xs) <= 513
    assert xs[0] <= 2048 and xs[-1] == 1_000_000 and all(y == 1.0 for y in ys)


def test_merged_points_are_means_of_what_they_stand_for() -> None:
    series = Series(cap=4)
    for x, y in enumerate([1.0, 3.0, 5.0, 7.0], start=1):
        series.add(x, y)
    assert series.points() == ([2.0, 4.0], [2.0, 6.0])  # full at 4: pairs merged, stride 2


def test_loss_ignores_nan_and_steps_repeated_by_a_resume() -> None:
    loss = LossSeries()
    for step, value in [(1, 1.0), (2, math.nan), (3, 0.5), (2, 9.0), (4, math.inf), (5, 0.25)]:
        loss.add(step, value)
    assert loss.raw.points() == ([1.0, 3.0, 5.0], [1.0, 0.5, 0.25])
    ema = loss.ema.points()[1]
    assert ema[0] == 1.0 and 0.25 < ema[-1] < 1.0  # smoothed, between the first and the latest


def test_a_plot_gets_at_most_one_point_per_column() -> None:
    series = Series(cap=512)
    for x in range(500):
        series.add(x, x)
    xs, _ = _thin(series, 80)
    assert len(xs) <= 81 and xs[0] == 0 and xs[-1] == 499

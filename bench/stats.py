"""Summaries of timed rounds that report only what was measured.

``statistics.quantiles`` defaults to the "exclusive" method, which extrapolates past the smallest and
largest sample when there are few of them: a loaded run once printed p10 = −1.188 s for a step.
The inclusive method interpolates between measured values, so p10/p90 always lie within
[min, max]; with one round both are that round.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def spread(times: Sequence[float]) -> tuple[float, float]:
    """(p10, p90) of the measured times, never outside their min and max."""
    if not times:
        raise ValueError("no timed rounds")
    if len(times) == 1:
        return times[0], times[0]
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return deciles[0], deciles[-1]

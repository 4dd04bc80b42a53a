"""Bench summaries report what was measured: p10/p90 never leave the measured range."""

from __future__ import annotations

import statistics

import pytest

from bench.stats import spread

# Three loaded rounds: the exclusive method (statistics' default) puts p10 far below the fastest step.
FEW_ROUNDS = [0.41, 0.43, 2.9]


def test_the_default_quantiles_extrapolate_below_the_fastest_round() -> None:
    assert statistics.quantiles(FEW_ROUNDS, n=10)[0] < min(FEW_ROUNDS)  # why spread() exists


def test_p10_and_p90_lie_within_the_measured_rounds() -> None:
    p10, p90 = spread(FEW_ROUNDS)
    assert min(FEW_ROUNDS) <= p10 <= p90 <= max(FEW_ROUNDS)


def test_one_round_is_its_own_p10_and_p90() -> None:
    assert spread([0.5]) == (0.5, 0.5)


def test_no_rounds_is_an_error() -> None:
    with pytest.raises(ValueError):
        spread([])

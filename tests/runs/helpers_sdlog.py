"""Shared helpers for the sd-scripts log tests: feed a fixture, pick events."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lora_tui.runs.sdscripts_log import SdScriptsFollower

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NOW = 1234.5


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def random_chunks(data: bytes, seed: int, largest: int = 9) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, largest)
        out.append(data[i:i + n])
        i += n
    return out


def follow(chunks: list[bytes] | bytes) -> tuple[list[dict[str, Any]], SdScriptsFollower]:
    """Feed the chunks (or one bytes object) with a fixed `now`; return all events and the follower."""
    follower = SdScriptsFollower()
    events: list[dict[str, Any]] = []
    for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
        events += follower.feed(chunk, NOW)
    events += follower.finish(NOW)
    return events, follower


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def without_t(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "t"} for e in events]

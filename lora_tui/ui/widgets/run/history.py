"""The GPU memory timeline of a whole run, read with bounded work (as ``reader.loss_history`` reads loss).

GPU samples are written every few seconds among many step lines; a small events.jsonl is read whole,
a large one is probed at evenly spaced offsets, so opening a month-long run costs what a short one does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lora_tui.runs import contract

READ_WHOLE_BELOW = 4 << 20


def _gpu_events(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for raw in lines:
        if b'"gpu"' not in raw or b'"used_mb"' not in raw:
            continue
        event = contract.parse_event(raw)
        if event is not None and event.get("kind") == "gpu" and isinstance(event.get("t"), (int, float)):
            out.append(event)
    return out


def _probe(f: Any, offset: int, chunk: int, reach: int) -> dict[str, Any] | None:
    """The first GPU sample after ``offset``, reading ``chunk`` bytes at a time up to ``reach`` bytes."""
    f.seek(offset)
    pending, read, first = b"", 0, True
    while read < reach:
        more = f.read(chunk)
        if not more:
            break
        read += len(more)
        lines = (pending + more).split(b"\n")
        pending = lines.pop()  # a line still being read
        if first:
            lines, first = lines[1:], False  # the probe landed inside this one
        found = _gpu_events(lines)
        if found:
            return found[0]
    return None


def gpu_history(run_dir: Path, before: float | None = None, max_points: int = 250, probe: int = 4096,
                reach: int = 65536, read_whole_below: int = READ_WHOLE_BELOW) -> list[dict[str, Any]]:
    """GPU samples over the run (at most about ``max_points``), in time order, those before ``before`` only.

    Each probe reads on from its offset until it finds a sample (``reach`` bytes at most): samples come
    every couple of seconds, so a probe usually costs one or two chunks, and probes cannot all miss
    because their spacing happens to match the sampling period."""
    path = Path(run_dir) / contract.EVENTS
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return []
    with f:
        if size <= read_whole_below:
            events = _gpu_events(f.read().split(b"\n"))
            step = max(1, len(events) // max_points)
            events = events[::step]
        else:
            events = []
            for i in range(max_points):
                found = _probe(f, size * i // max_points, probe, reach)
                if found is not None and (not events or found["t"] > events[-1]["t"]):
                    events.append(found)
    return [e for e in events if before is None or e["t"] < before]

"""status.json and events.jsonl: written so no reader ever sees half of either, read so no damage
or newer version makes a reader fail."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from lora_tui.runs import contract, reader


def test_status_is_replaced_whole_and_damage_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    contract.write_status(tmp_path, contract.new_status(state="running", last_step=3, loss=float("nan")))
    status, problem = contract.read_status(tmp_path)
    assert problem is None and status["state"] == "running" and status["loss"] is None  # NaN is not JSON
    assert not [p for p in tmp_path.iterdir() if p.name != "status.json"]  # no temporary file left
    (tmp_path / "status.json").write_text("{\"state\": \"runn")
    status, problem = contract.read_status(tmp_path)
    assert status == {} and "not JSON" in problem


def test_events_carry_t_and_kind_first_and_refuse_a_field_named_kind(tmp_path: Path) -> None:
    log = contract.EventLog(tmp_path)
    assert log.append("step", step=1, loss=0.5)
    line = (tmp_path / "events.jsonl").read_text()
    assert line.startswith('{"t": ') and '"kind": "step"' in line and line.endswith("}\n")
    with pytest.raises(ValueError):
        log.append("save", kind="lora")


def test_a_torn_last_line_is_skipped_and_the_next_event_starts_on_its_own_line(tmp_path: Path) -> None:
    contract.append_event(tmp_path, "step", step=1)
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b'{"t": 2, "kind": "st')  # a writer killed mid-line
    assert [e["step"] for e in contract.tail_events(tmp_path)] == [1]
    log = contract.EventLog(tmp_path)
    log._torn = True  # what a failed write leaves behind
    log.append("step", step=3)
    assert [e.get("step") for e in contract.iter_all_events(tmp_path)] == [1, 3]


def test_a_full_disk_drops_events_without_raising_and_says_so_when_space_is_back(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    log = contract.EventLog(tmp_path)
    log.append("step", step=1)
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data[:10]))  # half a line made it, then the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert not log.append("step", step=2) and not log.append("step", step=3)
    monkeypatch.setattr(os, "write", real_write)
    assert log.append("step", step=4)
    events = list(contract.iter_all_events(tmp_path))
    assert [e.get("step") for e in events if e["kind"] == "step"] == [1, 4]
    lost = next(e for e in events if e["kind"] == "warn")
    assert lost["code"] == "events_lost" and "2 events" in lost["message"] and "No space left" in lost["message"]


def test_tail_reads_the_last_events_across_block_boundaries(tmp_path: Path) -> None:
    log = contract.EventLog(tmp_path)
    for step in range(1, 3001):
        log.append("step", step=step, loss=1.0)
    tail = contract.tail_events(tmp_path, 250, block=997)
    assert [e["step"] for e in tail] == list(range(2751, 3001))


def test_event_tail_returns_each_complete_line_once(tmp_path: Path) -> None:
    follower = contract.EventTail(tmp_path)
    assert follower.read() == []
    contract.append_event(tmp_path, "step", step=1)
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b'{"t": 1, "kind": "step", "st')
    assert [e["step"] for e in follower.read()] == [1]
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b'ep": 2}\n')
    assert [e["step"] for e in follower.read()] == [2] and follower.read() == []


def test_a_run_from_a_newer_version_with_unknown_fields_and_kinds_reads(tmp_path: Path) -> None:
    contract.write_status(tmp_path, {"state": "finished", "last_step": 5, "total_steps": 5, "exit_code": 0,
                                     "schema": 7, "quantum": {"x": 1}})
    with open(tmp_path / "events.jsonl", "w") as f:
        f.write(json.dumps({"t": 1, "kind": "hologram", "frames": 3}) + "\n")
        f.write(json.dumps({"t": 2, "kind": "step", "step": 5, "loss": 0.2, "loss_avg": 0.3, "lr": {"unet": 1e-4},
                            "new_metric": [1, 2]}) + "\n")
        f.write("not json at all\n")
    info = reader.read_run(tmp_path)
    assert (info.state, info.step, info.loss, info.lr) == ("finished", 5, 0.2, {"unet": 1e-4})


def test_loss_history_is_bounded_and_ordered_whatever_the_length(tmp_path: Path) -> None:
    log = contract.EventLog(tmp_path)
    for step in range(1, 20001):
        log.append("step", step=step, loss=1.0 / step, loss_avg=0.5)
        if step % 100 == 0:
            log.append("gpu", index=0, used_mb=100.0)
    small = reader.loss_history(tmp_path, 500)
    sampled = reader.loss_history(tmp_path, 500, read_whole_below=0)  # the probing path of huge files
    for points in (small, sampled):
        steps = [p["step"] for p in points]
        assert 400 <= len(points) <= 500 and steps == sorted(set(steps))
        assert steps[-1] >= 19900 and all(p["loss_avg"] == 0.5 for p in points)
    assert small[-1]["step"] == 20000


def test_a_damaged_file_list_makes_diff_say_unknown_not_fail(tmp_path: Path) -> None:
    import gzip

    from lora_tui.runs.diff import _files

    for payload in (b'{"x": 5}', b'{"x": [[1]]}', b"not gzip"):
        (tmp_path / "dataset-files.json.gz").write_bytes(gzip.compress(payload) if payload != b"not gzip" else payload)
        assert _files(tmp_path) is None

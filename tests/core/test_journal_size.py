"""A journal that stays small and fast: texts stored once, caps by size and age, history in a blink."""

from __future__ import annotations

import random
import time
from pathlib import Path
from types import SimpleNamespace

from lora_tui.core.journal import Change, Journal, JournalLimits
from lora_tui.core.journal_plan import plan_trim, replay
from lora_tui.core.journal_store import OpRow, text_hash
from tests.helpers import write_caption_files


def _noise(rng: random.Random, n: int) -> str:
    """Text that does not compress (so sizes are what they are)."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n)) + "\n"


def test_a_journal_over_its_cap_is_trimmed_without_losing_the_latest_operations(tmp_path: Path) -> None:
    rng = random.Random(7)
    paths = write_caption_files(tmp_path, 10)
    journal = Journal(tmp_path, limits=JournalLimits(max_bytes=150_000, keep_last=5))
    history: list[list[str]] = [[p.read_text() for p in paths]]
    for n in range(40):
        texts = [_noise(rng, 1000) for _ in paths]
        journal.apply(f"edit {n}", [Change(p, old, new) for p, old, new in zip(paths, history[-1], texts)])
        history.append(texts)
    labels = [e.label for e in journal.history()]
    assert labels[-5:] == [f"edit {n}" for n in range(35, 40)] and len(labels) < 40
    assert journal.store.file.stat().st_size <= 150_000 + 40_000  # the cap, give or take the last operation
    for n in range(5):  # the latest operations undo exactly
        journal.undo()
        assert [p.read_text() for p in paths] == history[-2 - n]


def test_operations_older_than_the_age_cap_are_dropped_except_the_last_few(tmp_path: Path) -> None:
    paths = write_caption_files(tmp_path, 2)
    journal = Journal(tmp_path, limits=JournalLimits(max_age_s=10 * 86400, keep_last=2))
    now = time.time()
    for n in range(6):
        journal.clock = lambda n=n: now - (30 - n) * 86400  # six edits, a month ago
        journal.apply(f"old {n}", [Change(paths[0], paths[0].read_text(), f"v{n}\n")])
    journal.clock = time.time
    journal.apply("today", [Change(paths[1], paths[1].read_text(), "new\n")])
    assert [e.label for e in journal.history()] == ["old 5", "today"]


def test_texts_are_stored_once_and_the_journal_stays_small(tmp_path: Path) -> None:
    """10 bulk edits over 200 small captions: the journal grows by less than twice the text it changed."""
    paths = write_caption_files(tmp_path, 200)
    journal = Journal(tmp_path)
    changed = 0
    for n in range(10):
        changes = [Change(p, p.read_text(), p.read_text().rstrip("\n") + f", tag{n}\n") for p in paths]
        changed += sum(len(c.after.encode()) for c in changes)
        journal.apply(f"add tag{n}", changes)
    size = journal.store.file.stat().st_size
    assert size <= 2 * changed, (size, changed)
    hashes = {text_hash(p.read_bytes()) for p in paths}
    assert len(journal.store.texts(hashes)) == 200  # each current text is there, once


def test_history_takes_a_tenth_of_a_second_whatever_the_size(tmp_path: Path) -> None:
    rng = random.Random(1)
    journal = Journal(tmp_path)
    ops = []
    for n in range(2000):  # 2,000 operations over 20,000 distinct 2 KB texts that do not compress (40 MB)
        texts = {text_hash(data): data for data in (rng.randbytes(2000) for _ in range(10))}
        rows = [(f"data/{i}.txt", None, h) for i, h in enumerate(texts)]
        ops.append((SimpleNamespace(id=f"e{n}", label=f"edit {n}", t=float(n)), rows, texts))
    journal.store.import_ops(ops, [])
    assert journal.store.file.stat().st_size > 40_000_000
    t0 = time.perf_counter()
    entries = Journal(tmp_path).history()
    elapsed = time.perf_counter() - t0
    assert len(entries) == 2000 and elapsed < 0.1, elapsed


def _op(seq: int, kind: str = "edit", target: int | None = None, t: float = 0.0, state: str = "done",
        size: int = 100) -> OpRow:
    return OpRow(seq, f"id{seq}", kind, target, f"op {seq}", t, state, 1, 0, size)


def test_trimming_never_drops_what_redo_can_still_bring_back() -> None:
    ops = [_op(1), _op(2), _op(3), _op(4, "undo", 3), _op(5, "undo", 2)]  # redo stack: 3, then 2
    limits = JournalLimits(max_bytes=0, keep_last=0)
    assert plan_trim(ops, limits, now=0.0, size=10_000) == [1]
    done, undone, _ = replay([op for op in ops if op.seq != 1])
    assert done == [] and [e.seq for e in undone] == [3, 2]


def test_trimming_drops_an_edit_with_its_undos_and_redos_and_skips_interrupted_ones() -> None:
    ops = [_op(1), _op(2, "undo", 1), _op(3, "redo", 1), _op(4), _op(5, state="intent"), _op(6)]
    limits = JournalLimits(max_bytes=0, keep_last=1)
    assert plan_trim(ops, limits, now=0.0, size=10_000) == [1, 2, 3, 4]


def test_the_caps_are_project_settings(tmp_path: Path) -> None:
    import pytest

    from lora_tui.core import project
    from lora_tui.core.errors import ConfigError
    from tests.helpers import write_project

    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "."}]}])
    file = tmp_path / "lora-tui.toml"
    base = file.read_text()
    file.write_text(base.replace("[project]", "[project]\njournal_max_mb = 50\njournal_max_days = 7.5"))
    limits = Journal.for_project(project.load(tmp_path)).limits
    assert (limits.max_bytes, limits.max_age_s, limits.keep_last) == (50 << 20, 7.5 * 86400, 20)
    file.write_text(base.replace("[project]", "[project]\njournal_max_mb = 0"))
    with pytest.raises(ConfigError, match="journal_max_mb: must be at least 1"):
        project.load(tmp_path)

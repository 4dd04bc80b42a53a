"""The sentence captioner quiets transformers only while it works: the process gets its settings back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from lora_tui.caption.detect import resolve


@pytest.fixture
def chatty_transformers():
    """transformers at INFO with progress bars on (a program's own choice); restored afterwards."""
    import transformers

    log = transformers.logging
    before, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_info()
    log.enable_progress_bar()
    yield transformers
    log.set_verbosity(before)
    (log.enable_progress_bar if bars else log.disable_progress_bar)()


def test_loading_and_captioning_leave_transformers_logging_as_the_caller_set_it(
        chatty_transformers, tmp_path: Path, vlm_models: dict[str, Path]) -> None:
    from lora_tui.caption.vlm import GenSettings, SentenceCaptioner

    log = chatty_transformers.logging
    path = tmp_path / "a.png"
    Image.new("RGB", (20, 20), (200, 40, 90)).save(path)
    model = SentenceCaptioner(resolve(str(vlm_models["blip"])), GenSettings(max_new_tokens=2), device="cpu")
    assert log.get_verbosity() == log.INFO and log.is_progress_bar_enabled()
    seen = []
    generate = model.model.generate
    model.model.generate = lambda **kw: seen.append((log.get_verbosity(), log.is_progress_bar_enabled())) or \
        generate(**kw)
    model.run([model.prepare(str(path))])
    assert seen == [(log.ERROR, False)]  # quiet while it generates
    assert log.get_verbosity() == log.INFO and log.is_progress_bar_enabled()


def test_overlapping_quiet_sections_restore_only_when_the_last_one_ends(chatty_transformers) -> None:
    """A loader thread's section may end after the generating thread's began, or before it ends."""
    from lora_tui.caption.vlm import quiet_transformers

    log = chatty_transformers.logging
    entered, release = threading.Event(), threading.Event()

    def loader() -> None:
        with quiet_transformers(chatty_transformers):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=loader)
    thread.start()
    entered.wait(5)
    with quiet_transformers(chatty_transformers):
        release.set()
        thread.join(5)
        assert log.get_verbosity() == log.ERROR  # the loader left first: still quiet here
    assert log.get_verbosity() == log.INFO and log.is_progress_bar_enabled()

"""Auto-captioning from the dataset screen: a child process, captions appearing as they land,
cancellable, one undo for the whole run, and the review filter showing "needs review" first."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from lora_tui.core import project
from lora_tui.core.review import NEEDS_REVIEW
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.caption_modal import AskCaption
from lora_tui.ui.screens.dataset_table import DATASET_ACTIONS
from tests.caption.helpers import colour_project
from tests.caption.tiny_tagger import write_tiny_tagger
from tests.ui.settle import palette_run, wait_until
from tests.ui.test_dataset_screen import _open_dataset


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return write_tiny_tagger(tmp_path_factory.mktemp("tui-models") / "wd14")


async def _start(pilot, model: Path, extra: str = "") -> None:
    await palette_run(pilot, "auto-caption")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, AskCaption), "the caption dialog")
    dialog = pilot.app.screen
    dialog.query_one("#model", Input).value = str(model)
    dialog.query_one("#extra", Input).value = extra
    dialog.query_one("#model", Input).focus()
    await pilot.press("enter")


def _said(app: LoraTuiApp, fragment: str) -> bool:
    return any(fragment in str(n.message) for n in app._notifications)


async def test_captions_from_the_palette_land_marked_for_review_and_undo_in_one_step(tmp_path: Path,
                                                                                   tagger: Path) -> None:
    root = colour_project(tmp_path / "p", ["blue1", "green1", "red1"], captions={"green1": "grass\n"})
    pics = root / "data" / "pics"
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _open_dataset(pilot)
        await _start(pilot, tagger)
        await wait_until(pilot, lambda: _said(app, "auto-captioned 2 images, marked needs-review"), "the run", 600)
        assert (pics / "red1.txt").read_text() == "red theme, long hair, ^_^\n"
        assert (pics / "green1.txt").read_text() == "grass\n"
        shown = {r.record.name: r.text for r in screen.index.rows}
        assert shown["red1.png"] == "red theme, long hair, ^_^" and shown["blue1.png"].startswith("blue theme")
        assert screen.marks.with_mark(NEEDS_REVIEW) == {"data/pics/blue1.png", "data/pics/red1.png"}
        await pilot.press("v")  # the review filter (unreviewed) lists what needs review first
        await wait_until(pilot, lambda: [r.record.name for r in screen.index.view] == ["blue1.png", "red1.png",
                                                                                       "green1.png"],
                         "the review filter")
        await pilot.press("v")  # then only those
        await wait_until(pilot, lambda: [r.record.name for r in screen.index.view] == ["blue1.png", "red1.png"],
                         "the needs-review filter")
        await pilot.press("escape")
        await pilot.press("r")  # reviewed: no longer needs review
        assert not screen.marks.has("data/pics/blue1.png", NEEDS_REVIEW)
        await pilot.press("u")
        await wait_until(pilot, lambda: not (pics / "red1.txt").exists() and not (pics / "blue1.txt").exists(),
                         "one undo of the whole run")
        assert (pics / "green1.txt").read_text() == "grass\n"


def _slow_run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A tagger slow enough (~40 ms an image) to stop mid-run, and a 180-image project: (model, pics, names)."""
    slow = write_tiny_tagger(tmp_path / "big-input", size=1536)
    names = [f"{c}{i}" for i in range(60) for c in ("red", "green", "blue")]
    return slow, colour_project(tmp_path / "p", names) / "data" / "pics", names


async def _started_slow_run(pilot, slow: Path):
    screen = await _open_dataset(pilot)
    await _start(pilot, slow, "--batch-size 1")
    await wait_until(pilot, lambda: screen.captioner.written > 0, "the first captions", 600)
    return screen


async def test_cancelling_keeps_what_finished_as_one_undo_step(tmp_path: Path, tagger: Path) -> None:
    slow, pics, names = _slow_run(tmp_path)
    app = LoraTuiApp(project.load(pics.parents[1]))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _started_slow_run(pilot, slow)
        assert screen.captioner.running
        titles = [t for t, _ in DATASET_ACTIONS.palette_entries(screen)]
        assert "captions: Cancel auto-captioning (what finished stays, undoable)" in titles
        await screen.run_action("cancel_caption")  # what that palette entry runs (typing it takes a while)
        await wait_until(pilot, lambda: _said(app, "cancelled: auto-captioned"), "the cancelled run", 600)
        done = len(list(pics.glob("*.txt")))
        assert 0 < done < len(names)
        assert len(screen.marks.with_mark(NEEDS_REVIEW)) == done
        await pilot.press("u")
        await wait_until(pilot, lambda: not list(pics.glob("*.txt")), "one undo of what finished")


async def test_a_bad_model_folder_is_one_notification(tmp_path: Path) -> None:
    root = colour_project(tmp_path / "p", ["red1"])
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await _open_dataset(pilot)
        await _start(pilot, tmp_path / "nowhere")
        await wait_until(pilot, lambda: _said(app, "model folder does not exist"), "the error", 600)
        assert not list((root / "data" / "pics").glob("*.txt"))


async def test_a_run_stopped_by_sigterm_from_outside_says_so_and_keeps_what_finished(tmp_path: Path) -> None:
    import signal

    slow, pics, names = _slow_run(tmp_path)
    app = LoraTuiApp(project.load(pics.parents[1]))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _started_slow_run(pilot, slow)
        screen.captioner.process.send_signal(signal.SIGTERM)  # `kill`, an OOM guard, a job scheduler
        await wait_until(pilot, lambda: _said(app, "stopped by a signal: auto-captioned"), "the stopped run", 600)
        assert not any(n.severity == "error" for n in app._notifications)
        done = len(list(pics.glob("*.txt")))
        assert 0 < done < len(names) and len(screen.marks.with_mark(NEEDS_REVIEW)) == done

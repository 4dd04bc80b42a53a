"""The train screen's VRAM estimate, driven with real keys: it follows the form, says which card it is
compared with, gives doctor's advice when it will not fit, and makes a launch ask first (never blocks).

No GPU is asked here: the probe is pinned to "no NVIDIA driver" (or to a fake card where a test says
so), so the assumed 24 GB card is what the estimate is compared with, on any machine.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Static, Switch

from lora_tui.core import project, vram_check
from lora_tui.core.gpu import GpuMemory
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens import train_vram
from lora_tui.ui.screens.train import TrainScreen
from tests.helpers import write_images, write_project
from tests.ui.settle import wait_until

ASSUMED = "an assumed 24 GB card (no GPU here)"


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: None)


def full_size_project(root: Path, **training: object) -> Path:
    """Four captioned images at 512 px on a .ckpt model (its U-Net size unknown: the full-size estimate
    is this model's), AdamW in fp32, batch 1: about 7 GiB, well under the assumed card."""
    write_images(root / "data" / "a", [(256, 256)] * 4, captions={i: f"sks, tag{i}" for i in range(4)})
    write_project(root, [{"resolution": 512, "batch_size": 1, "enable_bucket": True, "min_bucket_reso": 256,
                          "max_bucket_reso": 1024, "bucket_reso_steps": 64,
                          "subsets": [{"image_dir": "data/a", "num_repeats": 1}]}],
                  training={"network_module": "networks.lora", "network_dim": 8, "network_alpha": 8.0,
                            "learning_rate": 1e-4, "optimizer_type": "AdamW", "max_train_steps": 10, **training},
                  model={"pretrained_model_name_or_path": "model.ckpt"})
    (root / "model.ckpt").write_bytes(b"PK stands in for a checkpoint that is never opened here")
    return root


def vram_text(screen: TrainScreen) -> str:
    return str(screen.query_one("#vram", Static).render())


def peak(text: str) -> float:
    return float(re.search(r"estimated peak VRAM ([0-9.]+) GiB", text).group(1))


async def train_screen(pilot) -> TrainScreen:
    await pilot.pause()
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TrainScreen)
                     and pilot.app.screen.preflight is not None
                     and "estimated peak VRAM" in vram_text(pilot.app.screen), "the checks and the estimate")
    return pilot.app.screen


async def retype(pilot, screen: TrainScreen, field: str, text: str) -> None:
    """Focus a field as a user would reach it, clear it and type."""
    screen.query_one(f"#{field}", Input).focus()
    await pilot.press("end", "ctrl+u", *text)


async def test_the_estimate_shows_next_to_the_steps_against_an_assumed_card_without_a_gpu(tmp_path: Path) -> None:
    app = LoraTuiApp(project.load(full_size_project(tmp_path / "p")))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        text = vram_text(screen)
        assert "largest bucket 512×512, batch 1, fp32" in text and "unverified on a GPU" in text
        assert f"✓ fits {ASSUMED}" in text
        assert "asks first" not in str(screen.query_one("#launch-state", Static).render())


async def test_typing_a_batch_size_updates_the_estimate_before_it_is_saved(tmp_path: Path) -> None:
    root = full_size_project(tmp_path / "p")
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        before = peak(vram_text(screen))
        await retype(pilot, screen, "m-batch_size", "2")
        await wait_until(pilot, lambda: "batch 2," in vram_text(screen), "the estimate for batch 2")
        text = vram_text(screen)
        assert "with unsaved edits" in text and peak(text) > before
        assert project.load(root).datasets[0].values["batch_size"] == 1  # typed, not saved


async def test_a_typed_resolution_moves_the_largest_bucket_and_the_estimate(tmp_path: Path) -> None:
    app = LoraTuiApp(project.load(full_size_project(tmp_path / "p")))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        before = peak(vram_text(screen))
        await retype(pilot, screen, "m-resolution", "768")
        await wait_until(pilot, lambda: "largest bucket 768×768" in vram_text(screen), "the 768 px estimate")
        assert peak(vram_text(screen)) > before


async def test_a_resolution_that_is_not_valid_is_said_and_the_saved_estimate_stays(tmp_path: Path) -> None:
    app = LoraTuiApp(project.load(full_size_project(tmp_path / "p")))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        await retype(pilot, screen, "m-resolution", "big")
        await wait_until(pilot, lambda: "not previewed" in vram_text(screen), "the refusal")
        text = vram_text(screen)
        assert "resolution: 'big' is not 512, or width,height" in text and "largest bucket 512×512" in text


async def test_gradient_checkpointing_switched_on_lowers_the_estimate_and_is_saved(tmp_path: Path) -> None:
    root = full_size_project(tmp_path / "p")
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        before = peak(vram_text(screen))
        screen.query_one("#s-gradient_checkpointing", Switch).focus()
        await pilot.press("space")
        await wait_until(pilot, lambda: "gradient checkpointing" in vram_text(screen), "the new estimate")
        assert peak(vram_text(screen)) < before
        assert project.load(root).training["gradient_checkpointing"] is True



async def test_bf16_picked_from_the_precision_list_is_saved_and_halves_the_weights(tmp_path: Path) -> None:
    root = full_size_project(tmp_path / "p")
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        weights = float(re.search(r"weights ([0-9.]+)", vram_text(screen)).group(1))
        screen.query_one("#s-mixed_precision").focus()
        await pilot.press("enter", "down", "down", "down", "enter")  # (default: no), no, fp16, bf16
        await wait_until(pilot, lambda: "batch 1, bf16" in vram_text(screen), "the bf16 estimate")
        assert float(re.search(r"weights ([0-9.]+)", vram_text(screen)).group(1)) < 0.6 * weights
        assert project.load(root).training["mixed_precision"] == "bf16"


async def test_an_estimate_over_the_card_gives_doctors_advice_and_the_launch_asks_first(tmp_path: Path) -> None:
    root = full_size_project(tmp_path / "p")
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        assert not screen.preflight.warnings and not screen.preflight.blocked
        await retype(pilot, screen, "m-batch_size", "8")
        await retype(pilot, screen, "m-resolution", "1024")
        await pilot.press("enter")  # saves the resolution; the batch is still a typed edit
        await wait_until(pilot, lambda: "batch 8," in vram_text(screen) and "1024×1024" in vram_text(screen),
                         "the estimate of both edits")
        screen.query_one("#m-batch_size", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.vram is not None and screen.vram.over, "the saved estimate")
        text = vram_text(screen)
        assert f"✗ more than {ASSUMED}: a launch asks first" in text and "with unsaved edits" not in text
        assert "→ set gradient_checkpointing = true" in text  # doctor's first knob
        assert "asks first: the VRAM estimate" in str(screen.query_one("#launch-state", Static).render())
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "Confirm", "the question")
        question = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert question.startswith("VRAM estimate over the free memory: launch anyway?")
        assert "\nVRAM: estimated peak VRAM" in question and "set gradient_checkpointing = true" in question
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.screen is screen and not screen.launching
        assert not (root / "runs").exists() or not any((root / "runs").iterdir())


async def test_the_estimate_is_compared_with_the_gpus_free_memory_when_there_is_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: [GpuMemory(0, "NVIDIA T4", 4 * 1024**3, 16 * 1024**3)])
    app = LoraTuiApp(project.load(full_size_project(tmp_path / "p")))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        text = vram_text(screen)
        assert "✗ more than 4.0 GiB free on GPU 0 (NVIDIA T4)" in text and "→ set " in text
        assert ASSUMED not in text


async def test_a_test_models_estimate_is_of_the_full_size_model_and_never_asks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: [GpuMemory(0, "NVIDIA T4", 1024**3, 16 * 1024**3)])
    root = full_size_project(tmp_path / "p")
    toml = root / "lora-tui.toml"
    toml.write_text(toml.read_text().replace('"model.ckpt"', '"lora-tui:tiny-sd15"'))
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        text = vram_text(screen)
        assert "of a full-size SD1.x model (lora-tui:tiny-sd15 is a test model)" in text
        assert "! more than 1.0 GiB free on GPU 0" in text and not screen.vram.over



async def test_batch_size_typed_once_sets_every_dataset_when_they_differ(tmp_path: Path) -> None:
    root = full_size_project(tmp_path / "p")
    write_images(root / "data" / "b", [(256, 256)] * 2, captions={0: "sks", 1: "sks"})
    toml = root / "lora-tui.toml"
    toml.write_text(toml.read_text() + '\n[[datasets]]\nresolution = 512\nbatch_size = 2\n'
                    '[[datasets.subsets]]\nimage_dir = "data/b"\n')
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        field = screen.query_one("#m-batch_size", Input)
        assert field.value == "" and field.placeholder.startswith("differs per dataset")
        field.focus()
        await pilot.press("enter")  # nothing typed: nothing is overwritten
        await pilot.pause()
        assert any("type a value to set every dataset's batch_size" in n.message for n in app._notifications)
        assert [ds.values["batch_size"] for ds in project.load(root).datasets] == [1, 2]
        await pilot.press("3", "enter")
        await wait_until(pilot, lambda: "batch 3," in vram_text(screen), "the saved estimate")
        assert [ds.values["batch_size"] for ds in project.load(root).datasets] == [3, 3]


async def test_an_estimate_that_fails_says_why_and_the_screen_still_launches_after_its_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("header vanished")

    monkeypatch.setattr(train_vram, "assess", broken)
    app = LoraTuiApp(project.load(full_size_project(tmp_path / "p")))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.preflight is not None
                         and "no estimate" in vram_text(app.screen), "the checks")
        screen = app.screen
        assert "no estimate: RuntimeError: header vanished" in vram_text(screen)
        assert str(screen.query_one("#launch-state", Static).render()) == "ready: ctrl+s launches, ctrl+e queues"


@pytest.fixture
def fixed_root(monkeypatch: pytest.MonkeyPatch):
    """A fixed folder and interpreter name: the train screen shows both in its command."""
    dest = Path("/tmp/lora-tui-snapshot-vram")
    shutil.rmtree(dest, ignore_errors=True)
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    yield dest / "p"
    shutil.rmtree(dest, ignore_errors=True)


def test_snapshot_of_an_estimate_over_the_assumed_card(snap_compare, fixed_root: Path) -> None:
    root = full_size_project(fixed_root)
    toml = root / "lora-tui.toml"
    toml.write_text(toml.read_text().replace("resolution = 512", "resolution = 1024").replace(
        "batch_size = 1", "batch_size = 4"))

    async def run_before(pilot) -> None:
        screen = await train_screen(pilot)
        assert screen.vram is not None and screen.vram.over
        for field in screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.1)

    assert snap_compare(LoraTuiApp(project.load(root)), terminal_size=(160, 48), run_before=run_before)


async def test_a_launch_right_after_a_setting_changes_waits_for_the_new_estimate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching gradient checkpointing off puts batch 4 at 1024 px over the card; a ctrl+s pressed before
    the new checks land must not launch on the old estimate (which fitted), and the panel must not show it."""
    from lora_tui.ui import launcher

    root = full_size_project(tmp_path / "p", gradient_checkpointing=True)
    toml = root / "lora-tui.toml"
    toml.write_text(toml.read_text().replace("resolution = 512", "resolution = 1024").replace(
        "batch_size = 1", "batch_size = 4"))
    launched: list[object] = []
    monkeypatch.setattr(launcher, "launch", lambda *a, **k: launched.append(a) or (root / "runs" / "x", "launched"))
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        assert not screen.vram.over
        old = vram_text(screen)
        real, gate = launcher.preflight, __import__("threading").Event()

        def slow(*args: object, **kwargs: object) -> object:
            gate.wait(10)  # the new checks take as long as a big dataset's scan
            return real(*args, **kwargs)

        monkeypatch.setattr(launcher, "preflight", slow)
        screen.query_one("#s-gradient_checkpointing", Switch).focus()
        await pilot.press("space", "ctrl+s")
        await pilot.pause(0.2)
        assert vram_text(screen) != old  # the old figure is not shown for the new settings
        assert not launched and type(app.screen).__name__ != "Confirm"
        assert any("still checking" in n.message for n in app._notifications)
        gate.set()
        await wait_until(pilot, lambda: screen.vram is not None and screen.vram.over, "the new estimate")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "Confirm", "the question")
        assert not launched


async def test_a_launch_with_a_typed_unsaved_batch_asks_first_and_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The form shows batch 2 (typed, no enter) while the run would train on the saved batch 1: ctrl+s says
    so and asks, rather than launch on values the form does not show."""
    from lora_tui.ui import launcher

    root = full_size_project(tmp_path / "p")
    launched: list[object] = []
    monkeypatch.setattr(launcher, "launch", lambda *a, **k: launched.append(a) or (root / "runs" / "x", "launched"))
    app = LoraTuiApp(project.load(root))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await train_screen(pilot)
        await retype(pilot, screen, "m-batch_size", "2")
        await wait_until(pilot, lambda: "batch 2," in vram_text(screen), "the typed estimate")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "Confirm", "the question")
        question = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert "unsaved" in question and "batch_size" in question
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not launched and project.load(root).datasets[0].values["batch_size"] == 1

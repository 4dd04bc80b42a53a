"""Preview renderers: the protocol setting, and each renderer receiving the decoded picture."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import project
from lora_tui.ui import graphics
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.dataset import DatasetScreen
from lora_tui.ui.settings import Settings, resolve_image_protocol
from lora_tui.ui.widgets.dataset.preview import ImagePreview
from tests.ui.settle import wait_until


def test_explicit_protocols_are_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORA_TUI_IMAGE_PROTOCOL", raising=False)
    for name in ("kitty", "sixel", "halfblock", "none"):
        assert resolve_image_protocol(name, detect=lambda: pytest.fail("no query for an explicit choice")) == name


def test_auto_asks_the_terminal_and_the_env_var_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORA_TUI_IMAGE_PROTOCOL", raising=False)
    assert resolve_image_protocol(None, detect=lambda: "sixel") == "sixel"
    monkeypatch.setenv("LORA_TUI_IMAGE_PROTOCOL", "none")
    assert resolve_image_protocol(None, detect=lambda: "sixel") == "none"


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of auto, kitty, sixel, halfblock, none"):
        resolve_image_protocol("iterm")


def test_auto_without_a_terminal_is_half_block() -> None:
    assert graphics.detect() == "halfblock"  # pytest's stdout is not a tty: nothing is queried


async def _open_preview(pilot) -> ImagePreview:
    app = pilot.app
    await pilot.press("d")
    await wait_until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.index is not None,
                     "dataset screen")
    preview = app.screen.query_one(ImagePreview)
    await wait_until(pilot, lambda: preview.shown is not None, "the first picture")
    return preview


@pytest.mark.parametrize("protocol", ["kitty", "sixel"])
async def test_graphics_protocols_get_a_pixel_sized_picture(sample_copy: Path, protocol: str) -> None:
    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-dark", image_protocol=protocol))
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await _open_preview(pilot)
        assert preview.graphic is not None and preview.graphic.image is not None
        cw, ch = graphics.cell_pixels()
        width, height = preview.graphic.image.size
        assert width > preview.size.width or height > preview.size.height * 2  # pixels, not cells
        assert width <= preview.size.width * cw and height <= preview.size.height * ch
        assert preview.has_class("graphic-shown") and not preview.text.display


async def test_half_block_draws_cells_itself(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-dark", image_protocol="halfblock"))
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await _open_preview(pilot)
        assert preview.graphic is None
        assert "▀" in app.export_screenshot()


async def test_previews_off_shows_the_name_only(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-dark", image_protocol="none"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.index is not None,
                         "dataset screen")
        preview = app.screen.query_one(ImagePreview)
        await wait_until(pilot, lambda: "previews off" in str(preview.text.render()), "the notice")
        assert preview.shown is None


@pytest.mark.parametrize("protocol", ["halfblock", "sixel"])
async def test_an_image_that_cannot_be_decoded_says_so_in_the_preview(sample_copy: Path, protocol: str) -> None:
    from lora_tui.ui.widgets.dataset.image_list import ImageList

    image = sample_copy / "data" / "armsup" / "pose_00.png"
    image.write_bytes(image.read_bytes()[:200])  # cut short, as by an interrupted copy
    app = LoraTuiApp(project.load(sample_copy), Settings(theme="lora-dark", image_protocol=protocol))
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await _open_preview(pilot)
        image_list = app.screen.query_one(ImageList)
        image_list.cursor = [r.record.name for r in image_list.rows].index("pose_00.png")
        await wait_until(pilot, lambda: preview.shown == image, "pose_00's preview")
        shown = str(preview.text.render())
        assert "pose_00.png cannot be decoded" in shown and "re-export" in shown
        assert preview.text.display and not preview.has_class("graphic-shown")


async def test_a_resized_pane_decodes_the_picture_again_at_its_new_size(sample_copy: Path) -> None:
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("d")
        await wait_until(pilot, lambda: bool(app.screen.query(ImagePreview)), "the dataset screen")
        preview = app.screen.query_one(ImagePreview)
        await wait_until(pilot, lambda: preview.shown is not None, "the first picture")
        before = preview.shown_cells
        await pilot.resize_terminal(180, 50)
        await wait_until(pilot, lambda: preview.shown_cells not in (None, before)
                         and preview.shown_cells == (preview.size.width, preview.size.height), "the larger picture")

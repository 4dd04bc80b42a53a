"""The dataset screen on a fine-tuning (metadata_file) subset: captions reviewed, edited and undone."""

from __future__ import annotations

import json
from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from tests.helpers import write_images, write_project
from tests.ui.settle import wait_until
from tests.ui.test_dataset_screen import _open_at


def _finetune_project(root: Path) -> Path:
    write_images(root / "imgs", [(64, 64)] * 2, prefix="f")
    meta = root / "meta.json"
    meta.write_text(json.dumps({"f0000.png": {"caption": "a dog", "tags": "grass"},
                                "f0001.png": {"caption": "a cat"}}, indent=2) + "\n")
    write_project(root, [{"resolution": 64, "subsets": [{"image_dir": "imgs", "metadata_file": "meta.json"}]}])
    return meta


async def test_a_metadata_caption_is_edited_in_the_screen_and_undone_with_u(tmp_path: Path) -> None:
    meta = _finetune_project(tmp_path)
    before = meta.read_bytes()
    app = LoraTuiApp(project.load(tmp_path))
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open_at(pilot, "f0000.png")
        assert screen.editor.text == "a dog,grass" and not screen.editor.read_only
        assert "meta.json" in (screen.editor.border_title or "")
        await pilot.press("e", "end", "comma", "space", "w", "e", "t", "escape")
        await wait_until(pilot, lambda: json.loads(meta.read_text())["f0000.png"].get("tags") is None,
                         "the save into meta.json")
        assert json.loads(meta.read_text())["f0000.png"] == {"caption": "a dog,grass, wet"}
        assert json.loads(meta.read_text())["f0001.png"] == {"caption": "a cat"}
        await pilot.press("u")
        await wait_until(pilot, lambda: meta.read_bytes() == before, "the undo")
        await wait_until(pilot, lambda: screen.editor.text == "a dog,grass", "the editor to show the undone text")


async def test_the_overview_says_which_images_a_later_subset_replaces(tmp_path: Path) -> None:
    from textual.widgets import Static

    from tests.ui.settle import settled

    for name, n in (("a", 3), ("b", 2)):
        write_images(tmp_path / name, [(64, 64)] * n, prefix="f", seed=len(name) + n)
        (tmp_path / f"{name}.json").write_text(json.dumps({f"f{i:04d}.png": {"caption": name} for i in range(n)}))
    write_project(tmp_path, [{"resolution": 64, "batch_size": 1, "enable_bucket": False, "subsets": [
        {"image_dir": "a", "metadata_file": "a.json"}, {"image_dir": "b", "metadata_file": "b.json"}]}])
    app = LoraTuiApp(project.load(tmp_path))
    async with app.run_test(size=(160, 50)) as pilot:
        await settled(pilot)
        text = str(app.screen.query_one("#steps", Static).render())
        assert "2 images of subset a are replaced by b's entries with the same names and will not train" in text
        assert "3 steps/epoch" in text


async def test_another_entry_changed_outside_while_editing_is_no_conflict_and_both_land(
        tmp_path: Path, monkeypatch) -> None:
    from lora_tui.ui.screens import dataset as dataset_screen

    monkeypatch.setattr(dataset_screen, "AUTOSAVE_SECONDS", 60)
    meta = _finetune_project(tmp_path)
    app = LoraTuiApp(project.load(tmp_path))
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        screen = await _open_at(pilot, "f0000.png")
        await pilot.press("e", "end", "comma", "space", "w", "e", "t")
        data = json.loads(meta.read_text())
        data["f0001.png"]["caption"] = "a cat, outside"
        meta.write_text(json.dumps(data, indent=2) + "\n")
        await wait_until(pilot, lambda: any(r.record.name == "f0001.png" and r.record.meta_caption == "a cat, outside"
                                            for r in (screen.index.rows if screen.index else [])),
                         "the outside change to be read")
        await pilot.press("escape")
        await wait_until(pilot, lambda: json.loads(meta.read_text())["f0000.png"] == {"caption": "a dog,grass, wet"},
                         "the save")
        assert json.loads(meta.read_text())["f0001.png"] == {"caption": "a cat, outside"}
        assert not any("changed outside" in str(n.message) for n in app._notifications)

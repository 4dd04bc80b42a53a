"""`lora-tui grid RUN` on a tiny model: checkpoints × weights × prompts into the run's grid/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lora_tui.cli import main
from lora_tui.runs import contract
from tests.lora_tools.conftest import random_lora


@pytest.fixture
def tiny_run(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A run folder as `lora-tui train` leaves it: args.toml, status, two LoRA saves in events."""
    run = tmp_path / "runs" / "20261202-010000-tiny"
    (run / "output").mkdir(parents=True)
    (run / "args.toml").write_text(f'pretrained_model_name_or_path = "{tiny_model_dir}"\noutput_name = "tiny"\n'
                                   'sample_sampler = "euler"\n', "utf-8")
    contract.write_status(run, contract.new_status(state="finished"))
    for step in (3, 6):
        path = random_lora(tiny_model_dir, run / "output" / f"tiny-step{step:08d}.safetensors", dim=4, seed=step,
                           conv_dim=None)
        contract.append_event(run, "save", step=step, epoch=1, path=str(path), type="lora")
    (tmp_path / "prompts.txt").write_text("a red cat --w 64 --h 64 --s 2\n# comment\nsks dog [smile] --d 7\n",
                                          "utf-8")
    return run


def test_grid_renders_every_checkpoint_weight_and_prompt_into_the_run(tiny_run: Path, capsys) -> None:
    prompts = tiny_run.parent.parent / "prompts.txt"
    assert main(["grid", str(tiny_run), "--prompts", str(prompts), "--weights", "0.5,1", "--size", "64x64",
                 "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "8 images (2 checkpoints × 2 weights × 2 prompts)" in out
    manifest = json.loads((tiny_run / "grid" / "grid.json").read_text())
    assert [c["label"] for c in manifest["checkpoints"]] == ["step 3", "step 6"]
    assert [p["seed"] for p in manifest["prompts"]] == [1234, 7]  # one seed per prompt, the file's --d kept
    for grid in manifest["grids"]:
        image = Image.open(grid)
        assert image.width > 2 * 64 and image.height > 2 * 64  # two columns, two rows and labels
    first = manifest["cells"]["0"]
    assert len(first) == 2 and all(len(row) == 2 for row in first)
    assert Image.open(first[0][0]).tobytes() != Image.open(first[1][0]).tobytes()  # the LoRA changes the image
    event = [e for e in contract.iter_all_events(tiny_run) if e["kind"] == "grid"][-1]
    assert event["paths"] == manifest["grids"] and event["cells"] == 8
    assert not [p for p in (tiny_run / "grid").iterdir() if p.name.startswith(".")]


def test_grid_same_seed_same_checkpoint_gives_the_same_image(tiny_run: Path) -> None:
    from lora_tui.train.lora_tools import grid

    prompts = tiny_run.parent.parent / "prompts.txt"
    a = grid.render(tiny_run, prompts_file=prompts, checkpoints="last:1", size=(64, 64), steps=2, device="cpu")
    first = Image.open(a["cells"]["0"][0][0]).tobytes()
    b = grid.render(tiny_run, prompts_file=prompts, checkpoints="6", size=(64, 64), steps=2, device="cpu")
    assert Image.open(b["cells"]["0"][0][0]).tobytes() == first


@pytest.mark.parametrize(("option", "message"), [
    (["--checkpoints", "99"], "no checkpoint saved at step 99"),
    (["--checkpoints", "last:0"], "last:N"),
    (["--weights", "x"], "--weights"),
])
def test_grid_bad_options_are_one_line_errors(tiny_run: Path, capsys, option: list[str], message: str) -> None:
    prompts = tiny_run.parent.parent / "prompts.txt"
    assert main(["grid", str(tiny_run), "--prompts", str(prompts), *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_grid_without_prompts_says_how_to_give_them(tiny_run: Path, capsys) -> None:
    assert main(["grid", str(tiny_run)]) == 2
    assert "--prompts FILE" in capsys.readouterr().err


async def test_the_rendered_grid_opens_in_the_tui_and_b_marks_the_best(tiny_run: Path) -> None:
    """End to end: `lora-tui grid` on a tiny run, then the app's grid screen on what it wrote."""
    from textual.app import App
    from textual.widgets import DataTable

    from lora_tui.ui.screens.grid import GridScreen

    prompts = tiny_run.parent.parent / "prompts.txt"
    assert main(["grid", str(tiny_run), "--prompts", str(prompts), "--weights", "0.5,1", "--size", "64x64",
                 "--steps", "2", "--device", "cpu", "--checkpoints", "last:2", "--quiet"]) == 0
    app = App()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = GridScreen(tiny_run)
        app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one("#cells", DataTable)
        assert table.row_count == 2 and len(table.columns) == 3
        await pilot.press("down", "b")
    best = [e for e in contract.iter_all_events(tiny_run) if e["kind"] == "best"][-1]
    assert best["step"] == 6 and best["path"].endswith("tiny-step00000006.safetensors")

"""`lora-tui grid RUN` on an SDXL run: the run's SDXL base (single file, offline) and the SDXL sampler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lora_tui.cli import main
from lora_tui.runs import contract
from tests.train.conftest import no_network  # noqa: F401 - the offline fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `lora-tui train` of the tiny SDXL single file: two steps, a save after each."""
    tmp = tmp_path_factory.mktemp("sdxl-run")
    assert main(["make-tiny-model", str(tmp / "m"), "--sdxl", "--single-file"]) == 0
    project = tmp / "sample"
    shutil.copytree(ROOT / "sample_project", project, ignore=shutil.ignore_patterns("runs", "configs", ".lora-tui"))
    toml = project / "lora-tui.toml"
    text = toml.read_text("utf-8").replace('"lora-tui:tiny-sd15"', json.dumps(str(tmp / "m" / "model.safetensors")))
    text = text.replace("resolution = 256", "resolution = 64").replace("min_bucket_reso = 128", "min_bucket_reso = 64")
    # a large rate so two steps change the pixels; a save at every step gives two checkpoints
    text = text.replace("learning_rate = 1e-4\nunet_lr = 1e-4", "learning_rate = 5e-2\nunet_lr = 5e-2")
    text = text.replace("save_every_n_epochs = 1", "save_every_n_steps = 1")
    toml.write_text(text, "utf-8")
    assert main(["train", str(project), "--max-train-steps", "2"]) == 0
    (run,) = (project / "runs").iterdir()
    (tmp / "prompts.txt").write_text("mira woman [smile] --w 64 --h 64 --s 2 --n blurry\n", "utf-8")
    return run


@pytest.mark.usefixtures("no_network")
def test_grid_on_an_sdxl_run_draws_with_the_sdxl_base_and_sampler(sdxl_run: Path, capsys) -> None:
    prompts = sdxl_run.parent.parent.parent / "prompts.txt"
    assert main(["grid", str(sdxl_run), "--prompts", str(prompts), "--weights", "0.5,1", "--size", "64x64",
                 "--steps", "2", "--device", "cpu", "--checkpoints", "1,2", "--quiet"]) == 0
    assert "4 images (2 checkpoints × 2 weights × 1 prompts)" in capsys.readouterr().out
    manifest = json.loads((sdxl_run / "grid" / "grid.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [1, 2]
    rows = manifest["cells"]["0"]
    assert len(rows) == 2 and all(len(row) == 2 for row in rows)
    pixels = [[Image.open(p).tobytes() for p in row] for row in rows]
    assert all(Image.open(p).size == (64, 64) for row in rows for p in row)
    assert pixels[0][1] != pixels[1][1]  # a different checkpoint, same seed: only the LoRA changed the image
    assert pixels[1][0] != pixels[1][1]  # and its strength
    event = [e for e in contract.iter_all_events(sdxl_run) if e["kind"] == "grid"][-1]
    assert event["cells"] == 4 and event["paths"] == manifest["grids"]


def test_sdxl_grid_cell_is_the_trainers_sdxl_sample_of_that_checkpoint(sdxl_run: Path) -> None:
    """Same prompt, seed and LoRA through the training-time SDXL sampler gives the same pixels."""
    import torch

    from lora_tui.train.loop.sampling import load_prompts
    from lora_tui.train.loop.sdxl_sampling import generate_sdxl_samples
    from lora_tui.train.lora_tools import grid
    from lora_tui.train.model.sdxl_load import load_sdxl_model
    from lora_tui.train.network.lora import LoRANetwork

    prompts_file = sdxl_run.parent.parent.parent / "prompts.txt"
    manifest = grid.render(sdxl_run, prompts_file=prompts_file, checkpoints="last:1", size=(64, 64), steps=2,
                           device="cpu")
    facts = grid.read_run(sdxl_run)
    base = load_sdxl_model(facts.model)
    net = LoRANetwork.from_weights(facts.checkpoints[-1].path, tuple(base.text_encoders), base.unet)
    net.apply_to()
    (prompt,) = load_prompts(prompts_file)
    from dataclasses import replace

    (made, _), = generate_sdxl_samples(model=base, prompts=[replace(prompt, seed=grid.DEFAULT_SEED)],
                                       out_dir=sdxl_run.parent / "ref", output_name=None, step=0, epoch=None,
                                       device="cpu", dtype=torch.float32, sampler=facts.sampler, network=net)
    assert Image.open(made).tobytes() == Image.open(manifest["cells"]["0"][0][0]).tobytes()


async def test_the_sdxl_grid_opens_in_the_tui_grid_view(sdxl_run: Path) -> None:
    from textual.app import App
    from textual.widgets import DataTable

    from lora_tui.ui.screens.grid import GridScreen

    prompts = sdxl_run.parent.parent.parent / "prompts.txt"
    assert main(["grid", str(sdxl_run), "--prompts", str(prompts), "--weights", "0.5,1", "--size", "64x64",
                 "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    app = App()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = GridScreen(sdxl_run)
        app.push_screen(screen)
        await pilot.pause()
        table = screen.query_one("#cells", DataTable)
        assert table.row_count == 2 and len(table.columns) == 3
        await pilot.press("down", "b")
    best = [e for e in contract.iter_all_events(sdxl_run) if e["kind"] == "best"][-1]
    assert best["step"] == 2

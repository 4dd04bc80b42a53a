"""The overview names the base model's family (read from its header) beside the project name."""

from __future__ import annotations

from pathlib import Path

from lora_tui.core import project
from lora_tui.ui.app import LoraTuiApp
from lora_tui.ui.screens.overview import OverviewScreen
from lora_tui.ui.widgets.project.findings import FindingsTable
from tests.helpers_models import write_header_only_model
from tests.ui.settle import settled


async def test_overview_shows_an_sdxl_model_and_its_resolution_warning(sample_copy: Path) -> None:
    model = write_header_only_model(sample_copy / "xl.safetensors", "sdxl")
    toml = sample_copy / "lora-tui.toml"
    text = toml.read_text()
    assert 'pretrained_model_name_or_path = "lora-tui:tiny-sd15"' in text
    toml.write_text(text.replace('pretrained_model_name_or_path = "lora-tui:tiny-sd15"',
                                 f'pretrained_model_name_or_path = "{model.name}"'))
    app = LoraTuiApp(project.load(sample_copy))
    async with app.run_test(size=(140, 45)) as pilot:
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        assert screen.sub_title.endswith("SDXL model")
        table = screen.query_one("#findings", FindingsTable)
        codes = [f.code for f in table.findings]
        assert "sdxl-resolution" in codes and "sdxl-builtin" not in codes  # builtin trains SDXL; 256 px is low

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_images, write_project


@pytest.fixture
def simple_project(tmp_path: Path) -> Path:
    """27 square images with captions, 20 repeats, batch 4, 10 epochs (the reference's example)."""
    write_images(tmp_path / "data" / "dog", [(512, 512)] * 27,
                 captions={i: f"sks dog, photo {i}, outdoors" for i in range(27)})
    return write_project(tmp_path, [{"resolution": 512, "batch_size": 4, "subsets": [
        {"image_dir": "data/dog", "num_repeats": 20, "trigger_word": "sks dog"}]}])

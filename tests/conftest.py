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


@pytest.fixture(scope="session")
def shared_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache for the session: built-in models (lora-tui:tiny-sd15) are built once, not per test."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _no_user_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                   shared_cache_home: Path) -> None:
    """Tests never see (or write) the user's Hugging Face cache, theme folder or lora-tui model cache;
    subprocesses inherit the same environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache_home))


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of sample_project/ (tests may write configs and captions)."""
    import shutil

    dest = tmp_path / "sample_project"
    shutil.copytree(Path(__file__).resolve().parents[1] / "sample_project", dest)
    return dest

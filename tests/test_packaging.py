"""The wheel carries what an installed lora-tui needs: themes, the sd-scripts option list."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_themes_and_data(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("lora_tui-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lora_tui/themes/lora-dark.toml", "lora_tui/themes/lora-light.toml",
            "lora_tui/core/data/train_network_args.json"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lora-tui = lora_tui.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_sample_project_is_what_the_generator_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_project.py"), str(tmp_path / "s")],
                   check=True, timeout=120)
    committed = ROOT / "sample_project"
    made = sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*") if p.is_file())
    ours = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file()
                  and p.parent.name != "configs" and ".lora-tui" not in p.parts)
    assert [p for p in made if p.parent.name != "configs"] == ours
    from PIL import Image

    for rel in ours:
        a, b = tmp_path / "s" / rel, committed / rel
        if rel.suffix == ".png":  # compare pixels: zlib builds may compress differently
            assert Image.open(a).tobytes() == Image.open(b).tobytes(), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel

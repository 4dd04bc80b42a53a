"""Files sd-scripts trains on, but not as the user sees them: lint says so (16-bit gray PNGs, EXIF rotation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lora_tui.core import lint, project
from tests.helpers import write_project


def test_16_bit_grayscale_pngs_are_a_warning_naming_them_and_the_fix(tmp_path: Path) -> None:
    pics = tmp_path / "data" / "pics"
    pics.mkdir(parents=True)
    Image.fromarray(np.full((64, 64), 30000, np.uint16)).save(pics / "depth.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(pics / "photo.png")
    Image.fromarray(np.full((64, 64, 3), 30000, np.uint16).astype(np.uint8)).save(pics / "rgb8.png")
    for name in ("depth", "photo", "rgb8"):
        (pics / f"{name}.txt").write_text("a picture\n")
    write_project(tmp_path, [{"resolution": 64, "subsets": [{"name": "pics", "image_dir": "data/pics"}]}])
    report = lint.check_project(project.load(tmp_path))
    found = [f for f in report.findings if f.code == "image-16bit"]
    assert len(found) == 1 and found[0].severity == lint.WARNING
    assert "1 image is a 16-bit grayscale PNG" in found[0].message and "depth.png" in found[0].message
    assert "8-bit" in (found[0].fix or "")


def test_the_same_image_saved_as_8_bit_is_not_flagged(tmp_path: Path) -> None:
    pics = tmp_path / "data" / "pics"
    pics.mkdir(parents=True)
    Image.fromarray(np.full((64, 64), 117, np.uint8)).save(pics / "depth.png")
    (pics / "depth.txt").write_text("a picture\n")
    write_project(tmp_path, [{"resolution": 64, "subsets": [{"name": "pics", "image_dir": "data/pics"}]}])
    assert not [f for f in lint.check_project(project.load(tmp_path)).findings if f.code == "image-16bit"]


def _jpeg_with_orientation(path: Path, orientation: int | None) -> None:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(path, quality=90, exif=exif)


def test_jpegs_with_an_exif_rotation_sd_scripts_ignores_are_a_warning(tmp_path: Path) -> None:
    pics = tmp_path / "data" / "pics"
    pics.mkdir(parents=True)
    for name, orientation in (("upright", None), ("normal", 1), ("phone", 6), ("mirrored", 2)):
        _jpeg_with_orientation(pics / f"{name}.jpg", orientation)
        (pics / f"{name}.txt").write_text("a picture\n")
    write_project(tmp_path, [{"resolution": 64, "subsets": [{"name": "pics", "image_dir": "data/pics"}]}])
    found = [f for f in lint.check_project(project.load(tmp_path)).findings if f.code == "image-exif-rotated"]
    assert len(found) == 1 and found[0].severity == lint.WARNING
    assert "2 images carry an EXIF rotation" in found[0].message
    assert "phone.jpg" in found[0].message and "mirrored.jpg" in found[0].message
    assert "upright.jpg" not in found[0].message and "auto-orient" in (found[0].fix or "")


def test_the_size_of_an_exif_rotated_jpeg_is_the_stored_one_as_sd_scripts_buckets_it(tmp_path: Path) -> None:
    from lora_tui.core import images

    _jpeg_with_orientation(tmp_path / "phone.jpg", 6)
    assert images.image_header(tmp_path / "phone.jpg") == ((60, 40), images.EXIF_TURNED)

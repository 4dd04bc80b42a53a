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


def _jpeg_with_exif(path: Path, tiff: bytes) -> None:
    """A 60×40 JPEG whose APP1 holds the given TIFF block (hand-made: Pillow writes only the common forms)."""
    import io
    import struct

    out = io.BytesIO()
    Image.new("RGB", (60, 40), (90, 90, 90)).save(out, "JPEG")
    data = out.getvalue()
    payload = b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:])


def _tiff(order: str, *, kind: int, ifd_at: int = 8) -> bytes:
    """A TIFF header and one IFD with Orientation 6 stored as `kind` (3 SHORT, 4 LONG) at offset `ifd_at`."""
    import struct

    o = "<" if order == "II" else ">"
    value = struct.pack(o + "H", 6) + b"\x00\x00" if kind == 3 else struct.pack(o + "I", 6)
    return (order.encode() + struct.pack(o + "HI", 42, ifd_at) + b"\x00" * (ifd_at - 8)
            + struct.pack(o + "H", 1) + struct.pack(o + "HHI", 0x0112, kind, 1) + value + struct.pack(o + "I", 0))


def test_an_exif_rotation_stored_as_a_long_or_past_a_big_maker_block_is_still_seen(tmp_path: Path) -> None:
    """Pillow's exif_transpose (the preview) turns these too, so lint must say they train turned."""
    from lora_tui.core import images

    cases = {"long-le": _tiff("II", kind=4), "long-be": _tiff("MM", kind=4),
             "far-le": _tiff("II", kind=3, ifd_at=6000), "far-be": _tiff("MM", kind=3, ifd_at=6000)}
    for name, tiff in cases.items():
        path = tmp_path / f"{name}.jpg"
        _jpeg_with_exif(path, tiff)
        with Image.open(path) as im:
            assert im.getexif().get(0x0112) == 6, name  # what the preview turns by
        assert images.image_header(path) == ((60, 40), images.EXIF_TURNED), name

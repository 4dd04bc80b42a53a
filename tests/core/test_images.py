"""Image discovery and header sizes, including the files that are not what they claim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from lora_tui.core import images
from lora_tui.core.errors import ImageError
from tests.helpers import image_bytes


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp")])
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (333, 777)])
def test_header_size_matches_pillow(tmp_path: Path, fmt: str, ext: str, size: tuple[int, int]) -> None:
    path = tmp_path / f"x{ext}"
    path.write_bytes(image_bytes(size, fmt))
    assert images.image_size(path) == Image.open(path).size == size


def test_lossless_and_alpha_webp(tmp_path: Path) -> None:
    for i, (mode, kw) in enumerate([("RGB", {"lossless": True}), ("RGBA", {})]):
        path = tmp_path / f"{i}.webp"
        Image.new(mode, (123, 45)).save(path, "WEBP", **kw)
        assert images.image_size(path) == (123, 45)


def test_progressive_jpeg_with_exif(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: sd-scripts ignores it, so do we
    Image.new("RGB", (300, 200)).save(path, "JPEG", progressive=True, exif=exif)
    assert images.image_size(path) == (300, 200)


def test_listing_follows_sd_scripts_rules(tmp_path: Path) -> None:
    for name in ("a.png", "b.JPG", "c.Png", ".hidden.png", "d.txt", "e.webp", "f.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.png").write_bytes(b"x")
    listing = images.list_folder(tmp_path)
    assert [p.name for p in listing.images] == ["a.png", "b.JPG", "e.webp"]
    assert listing.other_images == ["c.Png"]
    assert listing.subdirs == ["sub"]


def test_listing_splits_extensions_as_splitext_does(tmp_path: Path) -> None:
    names = ("a.b.png", "x.", "noext", "..png", ".png", ".hidden.png", "a.PNG.txt", "v1.2.JPG", "z.jpeg",
             "o.AVIF", "q.Jpeg")
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    listing = images.list_folder(tmp_path)
    visible = [n for n in sorted(names) if not n.startswith(".")]
    ext = {n: os.path.splitext(n)[1] for n in visible}
    assert listing.image_names == [n for n in visible if ext[n] in images.IMAGE_EXTENSIONS]
    assert listing.other_images == ["o.AVIF", "q.Jpeg"]
    assert listing.names == frozenset(names)


def test_zero_byte_image_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        images.image_size(tmp_path / "z.png")


def test_non_image_with_image_extension_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "n.png").write_text("this is not a picture")
    with pytest.raises(ImageError, match="not a readable image"):
        images.image_size(tmp_path / "n.png")


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp")])
def test_truncated_images_are_detected_from_the_tail(tmp_path: Path, fmt: str, ext: str) -> None:
    data = image_bytes((200, 200), fmt)
    whole, cut = tmp_path / f"w{ext}", tmp_path / f"c{ext}"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert images.check_complete(whole) is None
    assert "truncated" in (images.check_complete(cut) or "")
    assert images.verify_decode(whole) is None


def test_symlink_loop_does_not_hang_or_crash(tmp_path: Path) -> None:
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    listing = images.list_folder(tmp_path)
    assert [e.name for e in listing.images] == ["loop.png"]  # sd-scripts' glob lists it too
    with pytest.raises(ImageError, match="cannot read image"):
        images.image_size(tmp_path / "loop.png")


def test_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        images.list_folder(tmp_path / "nope")


def test_identical_files_hash_the_same(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"same")
    (tmp_path / "b.png").write_bytes(b"same")
    assert images.content_hash(tmp_path / "a.png") == images.content_hash(tmp_path / "b.png")

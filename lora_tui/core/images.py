"""Image discovery and header reading, the way sd-scripts finds and sizes images.

sd-scripts globs ``<image_dir>/*<ext>`` for a fixed, case-sensitive extension list (non-recursive;
hidden files never match ``*``) and sizes images from their headers (the ``imagesize`` package,
no EXIF rotation). We do the same with one ``os.scandir`` per folder and a few bytes per header,
so 10,000 images are listed in milliseconds and sized without decoding a pixel.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from lora_tui.core.errors import ImageError

# train_util.IMAGE_EXTENSIONS (avif/jxl only when their Pillow plugins are installed there).
IMAGE_EXTENSIONS = frozenset((".png", ".jpg", ".jpeg", ".webp", ".bmp",
                              ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP"))
OPTIONAL_EXTENSIONS = frozenset((".avif", ".AVIF", ".jxl", ".JXL"))
# Files sd-scripts writes next to images; never shown as dataset content.
CACHE_SUFFIXES = ("_sd.npz", "_sdxl.npz", "metadata_cache.json")


@dataclass(frozen=True)
class Listing:
    """What one folder holds: images (sorted like sd-scripts) and all plain file names."""

    folder: Path
    image_names: list[str]
    names: frozenset[str]
    subdirs: list[str]
    other_images: list[str]  # image-like names sd-scripts will not pick up (odd case, optional ext)

    @property
    def images(self) -> list[Path]:
        return [self.folder / name for name in self.image_names]


def list_folder(folder: Path, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> Listing:
    """List ``folder`` once (no stat per file); raises :class:`ImageError` when it cannot be read.

    Broken symlinks and symlink loops are listed like any file, as sd-scripts' glob lists them; they
    fail later, when their header is read, and lint reports them there.
    """
    images: list[str] = []
    names: set[str] = set()
    subdirs: list[str] = []
    odd: list[str] = []
    lowered = {e.lower() for e in extensions | OPTIONAL_EXTENSIONS}
    add_name, add_image = names.add, images.append  # 20,000 entries: the loop is the listing's cost
    try:
        with os.scandir(folder) as it:
            for entry in it:
                name = entry.name
                try:
                    is_dir = entry.is_dir()
                except OSError:  # a symlink loop: sd-scripts' glob still lists it, so do we
                    is_dir = False
                if is_dir:
                    subdirs.append(name)
                    continue
                add_name(name)
                if name.startswith("."):
                    continue
                # os.path.splitext(name)[1] for a name without a leading dot, at a quarter of the cost
                dot = name.rfind(".")
                ext = name[dot:] if dot > 0 else ""
                if ext in extensions:
                    add_image(name)
                elif ext.lower() in lowered:
                    odd.append(name)
    except FileNotFoundError:
        raise ImageError("image folder does not exist", path=folder,
                         hint="fix image_dir in lora-tui.toml or create the folder") from None
    except NotADirectoryError:
        raise ImageError("image_dir is a file, not a folder", path=folder) from None
    except PermissionError:
        raise ImageError("image folder is not readable", path=folder, hint=f"chmod u+rx '{folder}'") from None
    except OSError as exc:
        raise ImageError(f"cannot list folder: {exc.strerror or exc}", path=folder) from None
    except ValueError as exc:  # e.g. an embedded NUL in a hand-edited path
        raise ImageError(f"not a usable folder path: {exc}", path=repr(str(folder)),
                         hint="fix image_dir in lora-tui.toml") from None
    images.sort()  # sd-scripts sorts full paths; within one folder that is the name order
    return Listing(folder, images, frozenset(names), sorted(subdirs), sorted(odd))


def _png(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    return None


def _bmp(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"BM" or len(head) < 26:
        return None
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:
        w, h = struct.unpack("<HH", head[18:22])
        return w, h
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(f, head: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation: 1 when none) from the markers before the first frame."""
    if head[:2] != b"\xff\xd8":
        return None
    f.seek(2)
    orientation = 1
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD9, 0xDA):
            return None
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h, orientation
        if marker == 0xE1 and length > 16 and orientation == 1:
            head_of_segment = f.read(min(length - 2, 4096))  # IFD0 comes first; a thumbnail may follow
            if _exif_ifd_past(head_of_segment):  # IFD0 placed after a big block: read the rest (< 64 KB)
                head_of_segment += f.read(length - 2 - len(head_of_segment))
            orientation = _exif_orientation(head_of_segment)
            f.seek(length - 2 - len(head_of_segment), os.SEEK_CUR)
            continue
        f.seek(length - 2, os.SEEK_CUR)


def _exif_ifd_past(segment: bytes) -> bool:
    """An Exif segment whose first IFD (its entries, up to 512) does not end within ``segment``."""
    order = {b"II": "<", b"MM": ">"}.get(segment[6:8])
    if segment[:6] != b"Exif\x00\x00" or order is None or len(segment) < 14:
        return False
    (ifd,) = struct.unpack(order + "I", segment[10:14])
    at = 6 + ifd
    if at + 2 > len(segment):
        return True
    (count,) = struct.unpack(order + "H", segment[at:at + 2])
    return at + 2 + 12 * min(count, 512) > len(segment)


def _exif_orientation(segment: bytes) -> int:
    """The Orientation tag (0x0112) of an APP1 Exif segment's first IFD; 1 (as stored) if absent or odd."""
    if segment[:6] != b"Exif\x00\x00" or len(segment) < 14:
        return 1
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for i in range(min(count, 512)):
            at = ifd + 2 + 12 * i
            tag, kind = struct.unpack(order + "HH", tiff[at:at + 4])
            if tag == 0x0112 and kind in (3, 4):  # SHORT, or LONG as some writers store it (Pillow reads both)
                fmt, size = ("H", 2) if kind == 3 else ("I", 4)
                (value,) = struct.unpack(order + fmt, tiff[at + 8:at + 8 + size])
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


# Notes on files sd-scripts trains on, but not as the user sees them (ImageRecord.pixel_note).
GRAY16 = "gray16"  # a 16-bit grayscale PNG: Pillow's convert('RGB') clips it to almost white
EXIF_TURNED = "exif-turned"  # an EXIF orientation viewers apply and sd-scripts does not: trained turned


def _png_note(head: bytes) -> str | None:
    """What a PNG header says sd-scripts will get wrong (IHDR byte 24: bit depth, 25: colour type)."""
    if len(head) >= 26 and head[24] == 16 and head[25] == 0:  # 16-bit grayscale: Pillow's mode I;16
        return GRAY16
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; :class:`ImageError` for anything unreadable."""
    return image_header(path)[0]


def image_header(path: Path) -> tuple[tuple[int, int], str | None]:
    """(width, height) and, for the odd file, a note (GRAY16, EXIF_TURNED) on pixels sd-scripts will
    not train as the user sees them; from the one header read the size needs."""
    note = None
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not head:
                raise ImageError("image file is empty (0 bytes)", path=path,
                                 hint="delete it or replace it with the real image")
            size = _png(head)
            if size is not None:
                note = _png_note(head)
            size = size or _webp(head) or _bmp(head)
            if size is None and head[:2] == b"\xff\xd8":
                found = _jpeg(f, head)
                if found is not None:
                    size, note = found[:2], (EXIF_TURNED if found[2] != 1 else None)
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError("is a folder, not an image", path=path) from None
    except OSError as exc:
        raise ImageError(f"cannot read image: {exc.strerror or exc}", path=path) from None
    if size is None:
        size = _pillow_size(path)
    if size[0] <= 0 or size[1] <= 0:
        raise ImageError("image header gives a zero size", path=path, hint="re-export the image")
    return size, note


def _pillow_size(path: Path) -> tuple[int, int]:
    """Fallback for formats we do not parse by hand (AVIF, JXL, odd JPEGs): Pillow reads headers lazily."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover
        raise ImageError("not a recognised image format", path=path) from None
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError("not a readable image (wrong extension or corrupt header)", path=path,
                         hint="re-export it or remove it from the folder") from None


def check_complete(path: Path) -> str | None:
    """Cheap truncation check from the file's size and tail: None if it looks whole, else the reason.

    Covers what a header read alone can miss: an empty file whose size came from elsewhere (a
    fine-tuning metadata file), and files cut short (no end marker, or shorter than the header says).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(0, os.SEEK_END)
            length = f.tell()
            f.seek(max(0, length - 32))
            tail = f.read()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not length:
        return "image file is empty (0 bytes)"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in tail[-12:] else "PNG is truncated (no IEND chunk at the end)"
    if head[:2] == b"\xff\xd8":
        return None if b"\xff\xd9" in tail.rstrip(b"\x00") [-8:] else "JPEG is truncated (no end-of-image marker)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        declared = struct.unpack("<I", head[4:8])[0] + 8
        return None if length >= declared else f"WebP is truncated ({length} of {declared} bytes)"
    if head[:2] == b"BM":
        declared = struct.unpack("<I", head[2:6])[0]
        return None if length >= declared else f"BMP is truncated ({length} of {declared} bytes)"
    return None


def verify_decode(path: Path) -> str | None:
    """Full decode with Pillow (slow; for ``check --deep``): None if the pixels load."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # Pillow raises many types for corrupt data
        return f"cannot decode: {exc}"
    return None


def content_hash(path: Path) -> str:
    """BLAKE2b of the file bytes, for duplicate detection."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

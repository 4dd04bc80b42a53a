"""Caption sidecars with sd-scripts' semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core.captions import (
    caption_candidates,
    find_caption,
    join_tags,
    map_caption_lines,
    read_caption,
    split_tags,
)
from lora_tui.core.errors import CaptionError


def test_first_line_only_without_wildcards(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("  sks dog, grass  \nsecond variant\n")
    cap = read_caption(path)
    assert cap.effective() == "sks dog, grass"
    assert cap.effective(wildcard=True) == "sks dog, grass\nsecond variant"
    assert cap.ignored_lines == 1


def test_bom_is_tolerated_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffsks dog".encode())
    cap = read_caption(path)
    assert cap.effective() == "sks dog" and cap.had_bom


def test_non_utf8_caption_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("caf\xe9, dog".encode("latin-1"))
    with pytest.raises(CaptionError) as err:
        read_caption(path)
    assert str(err.value) == f"{path}:1: caption is not valid UTF-8 (re-save the file as UTF-8)"


def test_caption_path_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").mkdir()
    with pytest.raises(CaptionError, match="is a folder"):
        read_caption(tmp_path / "a.txt")


def test_face_crop_names_fall_back_to_the_base_caption(tmp_path: Path) -> None:
    image = tmp_path / "photo_a_1_2_3_4.png"
    assert caption_candidates(image, ".txt")[1] == tmp_path / "photo_a.txt"
    (tmp_path / "photo_a.txt").write_text("x")
    assert find_caption(image, ".txt") == tmp_path / "photo_a.txt"


def test_tags_split_on_the_configured_separator() -> None:
    assert split_tags("a, b ,, c") == ["a", "b", "c"]
    assert split_tags("a | b", "|") == ["a", "b"]
    assert join_tags(["a", "b"]) == "a, b"
    assert join_tags(["a", "b"], "|") == "a| b"
    assert join_tags(["a", "b"], ", ") == "a, b"


def test_editing_touches_only_live_lines_and_keeps_the_newline() -> None:
    upper = str.upper
    assert map_caption_lines("a, b\nignored\n", False, upper) == "A, B\nignored\n"
    assert map_caption_lines("a\n\nb", True, upper) == "A\n\nB"


def test_only_real_line_breaks_split_lines_like_sd_scripts() -> None:
    from lora_tui.core.captions import CaptionText

    cap = CaptionText("a, b\u2028c, d\x0cе\r\nsecond")
    assert cap.effective() == "a, b\u2028c, d\x0cе"
    assert map_caption_lines("a, b\u2028c\r\nkept\r\n", False, str.upper) == "A, B\u2028C\r\nkept\r\n"

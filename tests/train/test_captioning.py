"""Caption processing with sd-scripts' semantics and order (train_util.BaseDataset.process_caption)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lora_tui.core.errors import TrainError
from lora_tui.train.data.captions import (
    CaptionOptions,
    dreambooth_caption,
    metadata_caption,
    process_caption,
    read_caption_file,
)


def proc(caption: str, *, seed: int = 0, epoch: int = 1, step: int = 0, max_train_steps: int = 0,
         **kw: object) -> str:
    return process_caption(caption, CaptionOptions(**kw), random.Random(seed),  # type: ignore[arg-type]
                           epoch=epoch, step=step, max_train_steps=max_train_steps)


def outcomes(caption: str, n: int = 60, **kw: object) -> set[str]:
    return {proc(caption, seed=s, **kw) for s in range(n)}


def tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",")]


# --- each option alone ------------------------------------------------------------------------------------

def test_defaults_use_the_first_line_unchanged() -> None:
    assert proc("sks dog,grass\nsecond line") == "sks dog,grass"
    assert proc("{red|blue} dog") == "{red|blue} dog"  # wildcards are literal without enable_wildcard


def test_prefix_and_suffix_are_joined_with_a_space() -> None:
    assert proc("a, b", caption_prefix="sks,", caption_suffix="end") == "sks, a, b end"
    # the prefix joins the whole caption, so it also prefixes the first of several lines
    assert proc("a\nb", caption_prefix="p") == "p a"


def test_caption_dropout_rate_empties_the_caption() -> None:
    assert proc("a, b", caption_dropout_rate=1.0) == ""
    assert outcomes("a, b", caption_dropout_rate=0.5) == {"", "a, b"}
    # the dropout draw is the first random number taken
    for seed in range(10):
        dropped = random.Random(seed).random() < 0.5
        assert (proc("a, b", seed=seed, caption_dropout_rate=0.5) == "") == dropped


def test_caption_dropout_every_n_epochs_uses_the_1_based_epoch() -> None:
    got = [proc("a", epoch=e, caption_dropout_every_n_epochs=2) for e in range(1, 6)]
    assert got == ["a", "", "a", "", "a"]


def test_wildcards_choose_a_line_and_an_option() -> None:
    assert outcomes("one\ntwo\nthree", enable_wildcard=True) == {"one", "two", "three"}
    assert outcomes("{red|blue} dog, {big|small}", enable_wildcard=True) == {
        "red dog, big", "red dog, small", "blue dog, big", "blue dog, small"}
    assert proc("{{literal}} {a}", enable_wildcard=True) == "{literal} a"


def test_keep_tokens_fix_the_first_tags_while_shuffling() -> None:
    seen = outcomes("sks, a, b, c, d", keep_tokens=1, shuffle_caption=True)
    assert all(tags(s)[0] == "sks" and sorted(tags(s)[1:]) == ["a", "b", "c", "d"] for s in seen)
    assert len(seen) > 5
    assert proc("sks, a, b", keep_tokens=1) == "sks, a, b"  # no shuffle: untouched


def test_keep_tokens_separator_fixes_prefix_and_suffix() -> None:
    seen = outcomes("sks, dog ||| a, b, c ||| best quality", keep_tokens_separator="|||", shuffle_caption=True)
    for s in seen:
        t = tags(s)
        assert t[:2] == ["sks", "dog"] and t[-1] == "best quality" and sorted(t[2:5]) == ["a", "b", "c"]
    assert len(seen) == 6
    # keep_tokens is ignored when the separator is present
    assert all(tags(s)[:2] == ["sks", "dog"] for s in outcomes("sks, dog ||| a, b", keep_tokens=3,
                                                                keep_tokens_separator="|||", shuffle_caption=True))
    # without shuffle/warmup/tag dropout the caption is not split at all: the separator stays
    assert proc("a ||| b", keep_tokens_separator="|||") == "a ||| b"


def test_shuffle_rejoins_with_comma_space_and_keeps_empty_tags() -> None:
    out = proc("a;b;c", caption_separator=";", shuffle_caption=True)
    assert sorted(out.split(", ")) == ["a", "b", "c"]
    assert sorted(proc("a,,b", shuffle_caption=True).split(", ")) == ["", "a", "b"]


def test_tag_dropout_drops_flexible_tags_only() -> None:
    assert proc("sks, a, b, c", keep_tokens=1, caption_tag_dropout_rate=1.0) == "sks"
    assert proc("sks, a, b", caption_tag_dropout_rate=1.0) == ""
    seen = outcomes("a, b, c, d", caption_tag_dropout_rate=0.5)
    assert all(set(tags(s)) <= {"a", "b", "c", "d", ""} for s in seen) and len(seen) > 5
    assert all(s == ", ".join(t for t in "abcd" if t in tags(s)) for s in seen)  # order kept without shuffle


def test_secondary_separator_is_replaced_after_shuffling() -> None:
    seen = outcomes("sky;;;cloud, sea, sun", secondary_separator=";;;", shuffle_caption=True)
    assert all("sky,cloud" in s for s in seen)  # one tag while shuffling, caption_separator afterwards
    assert len(seen) == 6
    assert proc("sky;;;cloud", secondary_separator=";;;") == "sky,cloud"


def test_token_warmup_truncates_flexible_tags() -> None:
    cap = "sks, a, b, c, d"
    kw = {"keep_tokens": 1, "token_warmup_step": 10, "token_warmup_min": 1}
    assert proc(cap, step=0, **kw) == "sks, a"
    assert proc(cap, step=5, **kw) == "sks, a, b"  # floor(5 * (4 - 1) / 10) + 1 = 2 flexible tags
    assert proc(cap, step=10, **kw) == cap
    # a value below 1 is a fraction of max_train_steps (0.5 × 20 = 10 steps)
    assert proc(cap, step=5, max_train_steps=20, keep_tokens=1, token_warmup_step=0.5) == "sks, a, b"


# --- combined, order, determinism ----------------------------------------------------------------------------

ALL = {"caption_prefix": "sks", "caption_suffix": "|||, masterpiece", "enable_wildcard": True,
       "keep_tokens_separator": "|||", "shuffle_caption": True, "caption_tag_dropout_rate": 0.3,
       "secondary_separator": ";;;", "caption_dropout_rate": 0.1}


def test_everything_combined_follows_sd_scripts_order() -> None:
    cap = "dog ||| {red|blue} coat, grass;;;field, sky\ncat ||| indoors, sofa"
    seen = outcomes(cap, n=200, **ALL)
    assert "" in seen  # caption dropout
    assert {tags(s)[0] for s in seen - {""}} == {"sks dog", "cat"}
    for s in seen - {""}:
        t = tags(s)
        assert "{" not in s and ";;;" not in s and "|||" not in s
        # prefix and suffix join the whole text before a line is chosen: the first line gets the
        # prefix (space-joined into its first fixed tag), the last line the suffix (a fixed suffix part)
        if t[0] == "sks dog":
            assert set(t[1:]) <= {"red coat", "blue coat", "grass", "field", "sky"}
            assert "grass" not in t or t[t.index("grass") + 1] == "field"  # secondary separator: one unit
        else:
            assert t[-1] == "masterpiece" and set(t[1:-1]) <= {"indoors", "sofa"}


def test_same_seed_same_caption_and_seeds_differ() -> None:
    cap = "a, b, c, d, e, f, g\nh, i, j"
    assert all(proc(cap, seed=s, **ALL) == proc(cap, seed=s, **ALL) for s in range(20))
    assert len(outcomes(cap, n=20, **ALL)) > 10


def test_options_from_a_getter_and_static_detection() -> None:
    values = {"shuffle_caption": True, "keep_tokens": 2, "caption_separator": ";"}
    opts = CaptionOptions.from_getter(values.get)
    assert (opts.shuffle_caption, opts.keep_tokens, opts.caption_separator, opts.token_warmup_min) == (True, 2, ";", 1)
    assert not opts.is_static
    assert CaptionOptions(enable_wildcard=True, keep_tokens=1).is_static


# --- where a caption comes from ---------------------------------------------------------------------------

def test_dreambooth_caption_file_class_tokens_and_empty(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("  sks dog, grass \nvariant two\n\n", encoding="utf-8")
    image = tmp_path / "a.png"
    assert dreambooth_caption(image, ".txt", False, "dog") == ("sks dog, grass", "file")
    assert dreambooth_caption(image, ".txt", True, None) == ("sks dog, grass\nvariant two", "file")
    assert dreambooth_caption(tmp_path / "b.png", ".txt", False, "sks dog") == ("sks dog", "class_tokens")
    assert dreambooth_caption(tmp_path / "b.png", ".txt", False, None) == ("", "empty")
    assert dreambooth_caption(image, ".caption", False, "dog") == ("dog", "class_tokens")
    # face-crop file names fall back to the caption of the un-suffixed stem
    (tmp_path / "face.txt").write_text("face caption")
    assert dreambooth_caption(tmp_path / "face_1_2_3_4.png", ".txt", False, None) == ("face caption", "file")


def test_bad_caption_files_stop_training(tmp_path: Path) -> None:
    empty = tmp_path / "e.txt"
    empty.write_text("")
    with pytest.raises(TrainError, match="empty"):
        read_caption_file(empty, False)
    (tmp_path / "blank.txt").write_text("\n")
    assert read_caption_file(tmp_path / "blank.txt", False) == ""  # one blank line is an empty caption
    bad = tmp_path / "b.txt"
    bad.write_bytes(b"\xff\xfe bad")
    with pytest.raises(TrainError, match="UTF-8"):
        read_caption_file(bad, False)


def test_metadata_caption_joins_caption_and_tags() -> None:
    assert metadata_caption("a photo", "dog, grass", ",", False) == "a photo,dog, grass"
    assert metadata_caption("a photo", None, ",", False) == "a photo"
    assert metadata_caption(None, "dog", ",", False) == "dog"
    assert metadata_caption("", "", ",", False) == ""
    assert metadata_caption("one\ntwo\n", "dog\ngrass", ",", True) == "one,dog,grass\ntwo,dog,grass"
    assert metadata_caption("one", None, ",", True) == "one"
    assert metadata_caption("", "dog", ",", True) == ""  # sd-scripts appends tags to caption lines only

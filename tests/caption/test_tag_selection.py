"""WD14 tag selection rules, on probabilities given directly."""

from __future__ import annotations

from lora_tui.caption.tagger import TagSettings, TagTable, select_tags

TABLE = TagTable(("general", "sensitive", "long_hair", "smile", "^_^", "judy_(zootopia)", "1girl"),
                 (9, 9, 0, 0, 0, 4, 0))
PROBS = (0.6, 0.3, 0.9, 0.4, 0.5, 0.7, 0.2)


def test_general_tags_over_the_threshold_by_confidence_without_ratings() -> None:
    assert select_tags(PROBS, TABLE, TagSettings()) == ["long hair", "^_^", "smile"]


def test_character_tags_have_their_own_threshold() -> None:
    assert "judy (zootopia)" in select_tags(PROBS, TABLE, TagSettings(character_threshold=0.65))
    assert "judy (zootopia)" not in select_tags(PROBS, TABLE, TagSettings(threshold=0.1))


def test_exclude_matches_either_spelling_and_ratings_lead_when_asked() -> None:
    tags = select_tags(PROBS, TABLE, TagSettings(exclude=frozenset({"long hair", "^_^"}), ratings=True))
    assert tags == ["general", "smile"]


def test_underscores_kept_when_asked() -> None:
    assert select_tags(PROBS, TABLE, TagSettings(underscores=True, threshold=0.85)) == ["long_hair"]


def test_a_tagger_exported_with_batch_size_one_runs_image_by_image(tmp_path) -> None:
    import pytest

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from lora_tui.caption.detect import detect
    from lora_tui.caption.tagger import Tagger
    from tests.caption.helpers import colour_project
    from tests.caption.tiny_tagger import write_tiny_tagger

    tagger = Tagger(detect(write_tiny_tagger(tmp_path / "t", fixed_batch=True)), TagSettings())
    root = colour_project(tmp_path / "p", ["red1", "blue1"])
    images = [str(root / "data" / "pics" / n) for n in ("red1.png", "blue1.png")]
    assert tagger.one_at_a_time
    assert [tags[0] for tags in tagger.run([tagger.prepare(p) for p in images])] == ["red theme", "blue theme"]


def test_an_excluded_tag_or_a_rating_stays_out_even_with_an_infinite_score() -> None:
    inf = float("inf")
    probs = (inf, 0.3, inf, 0.4, 0.5, 0.7, 0.2)  # a broken export: +inf on a rating and an excluded tag
    assert select_tags(probs, TABLE, TagSettings(exclude=frozenset({"long hair"}))) == ["^_^", "smile"]


def test_a_nan_score_never_picks_a_tag_or_a_rating() -> None:
    nan = float("nan")
    probs = (nan, 0.3, 0.9, nan, 0.5, nan, 0.2)  # fp16 overflow gives NaN for some outputs
    assert select_tags(probs, TABLE, TagSettings(ratings=True)) == ["sensitive", "long hair", "^_^"]
    assert select_tags((nan,) * len(TABLE.names), TABLE, TagSettings(ratings=True)) == []

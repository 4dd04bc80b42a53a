"""Completing tags from the dataset's vocabulary while a caption is typed."""

from __future__ import annotations

from lora_tui.core.tag_complete import TagVocabulary, typed_fragment


def test_the_fragment_is_the_text_after_the_last_separator() -> None:
    assert typed_fragment("mira, 1girl, smi") == "smi"
    assert typed_fragment("smi") == "smi"
    assert typed_fragment("mira, ") == ""
    assert typed_fragment("a | b", separator="|") == "b"


def test_the_most_used_tag_wins_and_ties_go_alphabetical() -> None:
    vocab = TagVocabulary({"smile": 3, "smiling": 9, "small": 1, "smirk": 9})
    assert vocab.candidates("smi") == ["smiling", "smirk", "smile"]
    assert vocab.completion("smi") == "ling"


def test_a_complete_tag_is_not_suggested_again() -> None:
    vocab = TagVocabulary({"smile": 3})
    assert vocab.completion("smile") == ""
    assert vocab.completion("") == ""


def test_matching_ignores_case_but_completion_keeps_what_was_typed() -> None:
    vocab = TagVocabulary({"Blue eyes": 5, "blue sky": 1})
    assert vocab.candidates("blue") == ["Blue eyes", "blue sky"]
    assert vocab.completion("blue") == " sky"  # "Blue eyes" would have to rewrite the typed "b"


def test_unicode_prefixes() -> None:
    vocab = TagVocabulary({"café": 2, "cafe": 1})
    assert vocab.completion("caf") == "é"


def test_tags_already_in_the_caption_are_skipped() -> None:
    vocab = TagVocabulary({"short hair": 9, "shirt": 2})
    assert vocab.completion("sh", present={"short hair"}) == "irt"

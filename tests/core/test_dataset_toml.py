"""Our validator accepts exactly what sd-scripts' config_util accepts, and renders valid files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lora_tui.core import dataset_toml
from lora_tui.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _ok(subsets: list[dict], **dataset) -> dict:
    return {"general": {"caption_extension": ".txt"}, "datasets": [{"resolution": 512, **dataset,
                                                                     "subsets": subsets}]}


def _messages(config: dict, **kw) -> list[str]:
    return [str(p) for p in dataset_toml.validate(config, **kw)]


def test_reference_example_is_valid() -> None:
    config = {"general": {"caption_extension": ".txt", "shuffle_caption": True, "keep_tokens": 1,
                          "enable_bucket": True, "bucket_no_upscale": False, "min_bucket_reso": 256,
                          "max_bucket_reso": 1024, "bucket_reso_steps": 64},
              "datasets": [{"resolution": 512, "batch_size": 4, "subsets": [
                  {"image_dir": "/data/sks_dog", "num_repeats": 20, "class_tokens": "sks dog"},
                  {"image_dir": "/data/reg_dog", "is_reg": True, "num_repeats": 1, "class_tokens": "dog"}]}]}
    assert dataset_toml.validate(config) == []


def test_unknown_key_is_reported_with_its_path_and_a_suggestion() -> None:
    msgs = _messages(_ok([{"image_dir": "a", "num_repeat": 3}]))
    assert msgs == ["datasets[0].subsets[0].num_repeat: unknown key 'num_repeat' at subset level "
                    "(did you mean 'num_repeats'?)"]


def test_float_keys_reject_integers() -> None:
    msgs = _messages(_ok([{"image_dir": "a"}], network_multiplier=1))
    assert msgs == ["datasets[0].network_multiplier: expected a float, got 1 (write 1.0)"]


def test_int_keys_reject_floats() -> None:
    config = _ok([{"image_dir": "a"}])
    config["datasets"][0]["resolution"] = 512.0
    assert "datasets[0].resolution" in _messages(config)[0]


def test_face_crop_range_needs_two_floats() -> None:
    assert _messages(_ok([{"image_dir": "a", "face_crop_aug_range": [1, 3]}]))
    assert not _messages(_ok([{"image_dir": "a", "face_crop_aug_range": [1.0, 3.0]}]))


def test_subset_only_keys_are_refused_at_dataset_level() -> None:
    msgs = _messages(_ok([{"image_dir": "a"}], is_reg=True))
    assert msgs == ["datasets[0].is_reg: 'is_reg' is only allowed in [[datasets.subsets]]"]


def test_prior_loss_weight_is_a_flag_not_a_dataset_key() -> None:
    config = _ok([{"image_dir": "a"}])
    config["general"]["prior_loss_weight"] = 1.0
    assert "command-line flag" in _messages(config)[0]


def test_mixing_dreambooth_and_finetuning_subsets_is_refused() -> None:
    msgs = _messages(_ok([{"image_dir": "a"}, {"metadata_file": "m.json"}]))
    assert any("cannot be mixed" in m for m in msgs)


def test_finetuning_dataset_refuses_class_tokens_at_dataset_level() -> None:
    msgs = _messages(_ok([{"metadata_file": "m.json"}], class_tokens="dog"))
    assert any("class_tokens" in m for m in msgs)


def test_finetuning_subset_needs_no_resolution_check_but_dreambooth_does() -> None:
    config = {"datasets": [{"subsets": [{"image_dir": "a"}]}]}
    assert any("resolution is required" in m for m in _messages(config))


def test_dataset_without_subsets_is_refused() -> None:
    assert any("no subsets" in m for m in _messages(_ok([])))


def test_conditioning_subsets_need_masked_loss() -> None:
    config = _ok([{"image_dir": "a", "conditioning_data_dir": "m"}])
    assert any("masked_loss" in m for m in _messages(config))
    assert not _messages(config, masked_loss=True)


def test_bucket_steps_must_be_a_multiple_of_64_for_sd1() -> None:
    config = _ok([{"image_dir": "a"}], bucket_reso_steps=32)
    assert any("multiple of 64" in m for m in _messages(config))
    assert not _messages(config, bucket_step_multiple=32)


def test_resolution_outside_bucket_bounds_is_refused() -> None:
    config = _ok([{"image_dir": "a"}], enable_bucket=True, resolution=1024, max_bucket_reso=768)
    assert any("max_bucket_reso" in m for m in _messages(config))


def test_top_level_typo_is_refused() -> None:
    assert _messages({"dataset": [], "datasets": []})[0].startswith("dataset: unknown top-level key")


def test_render_keeps_floats_and_round_trips() -> None:
    general = {"caption_extension": ".txt", "caption_dropout_rate": 0.0}
    datasets = [{"resolution": [768, 512], "batch_size": 2, "network_multiplier": 1.0,
                 "subsets": [{"image_dir": "/x", "face_crop_aug_range": [1.0, 3.0]}]}]
    text = dataset_toml.render(general, datasets, header="generated")
    assert "network_multiplier = 1.0" in text and "caption_dropout_rate = 0.0" in text
    parsed = tomllib.loads(text)
    assert parsed == {"general": general, "datasets": datasets}
    assert dataset_toml.validate(parsed) == []


def test_load_reports_the_line_of_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[general]\ncaption_extension = ".txt"\n\n[[datasets]]\nresolution = 512\n\n'
                    '[[datasets.subsets]]\nimage_dir = "a"\nnum_repeat = 2\n')
    with pytest.raises(ConfigError) as err:
        dataset_toml.load(path)
    assert err.value.line == 9
    assert str(err.value).startswith(f"{path}:9: datasets[0].subsets[0].num_repeat")


def test_load_reports_invalid_toml_with_line(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[general]\ncaption_extension = \n")
    with pytest.raises(ConfigError) as err:
        dataset_toml.load(path)
    assert err.value.line == 2 and "invalid TOML" in str(err.value)

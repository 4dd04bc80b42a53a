"""Loading, validating and saving lora-tui.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui.core import configs, project
from lora_tui.core.errors import ConfigError, ProjectError
from tests.helpers import write_images, write_project

GOOD = """# my project
[project]
name = "judy"   # keep this comment

[model]
pretrained_model_name_or_path = "/models/v15.safetensors"

[general]
caption_extension = ".txt"

[[datasets]]
resolution = 512
batch_size = 2

  [[datasets.subsets]]
  image_dir = "data/judy"
  num_repeats = 10

[training]
network_module = "networks.lora"
learning_rate = 1e-4
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "lora-tui.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_loads_subsets_with_resolved_paths(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, GOOD))
    sub = proj.subsets[0]
    assert sub.image_dir == tmp_path.resolve() / "data" / "judy"
    assert sub.get("num_repeats") == 10
    assert sub.get("batch_size") == 2
    assert sub.get("caption_extension") == ".txt"


def test_comments_survive_a_save(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, GOOD))
    project.set_value(proj, "training", "network_dim", 32)
    project.save(proj)
    text = (tmp_path / "lora-tui.toml").read_text()
    assert "# my project" in text and "# keep this comment" in text and "network_dim = 32" in text


def test_missing_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as err:
        project.load(tmp_path / "nope")
    assert "does not exist" in str(err.value) and "lora-tui new" in str(err.value)


def test_folder_without_project_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"no lora-tui\.toml here"):
        project.load(tmp_path)


def test_unreadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, GOOD)
    monkeypatch.setattr(project.os, "access", lambda path, mode: Path(path) != tmp_path)  # as if chmod 000
    with pytest.raises(ProjectError, match="not readable"):
        project.load(tmp_path)


def test_invalid_toml_shows_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        project.load(_write(tmp_path, GOOD.replace("batch_size = 2", "batch_size = ")))
    assert err.value.line == 13


def test_unknown_dataset_key_shows_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        project.load(_write(tmp_path, GOOD.replace("num_repeats = 10", "num_repeat = 10")))
    assert err.value.line == 17
    assert "did you mean 'num_repeats'" in str(err.value)


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected an integer"):
        project.load(_write(tmp_path, GOOD.replace("num_repeats = 10", 'num_repeats = "10"')))


def test_unknown_training_option_is_refused_with_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        project.load(_write(tmp_path, GOOD + "learnin_rate = 1e-4\n"))
    assert "did you mean 'learning_rate'" in str(err.value)
    assert err.value.line == 22


def test_training_choice_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of no, fp16, bf16"):
        project.load(_write(tmp_path, GOOD + 'mixed_precision = "fp8"\n'))


def test_managed_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="managed by lora-tui"):
        project.load(_write(tmp_path, GOOD + 'train_data_dir = "x"\n'))


def test_unknown_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown table \[trainig\]"):
        project.load(_write(tmp_path, GOOD + "[trainig]\n"))


def test_bad_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend"):
        project.load(_write(tmp_path, GOOD.replace('name = "judy"', 'backend = "kohya"')))


def test_generated_dataset_config_always_has_caption_extension(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(512, 512)])
    write_project(tmp_path, [{"resolution": 512, "subsets": [{"image_dir": "a", "trigger_word": "x"}]}],
                  general={})
    config = project.sd_scripts_dataset_config(project.load(tmp_path))
    assert config["general"]["caption_extension"] == ".txt"
    assert "trigger_word" not in config["datasets"][0]["subsets"][0]
    assert config["datasets"][0]["subsets"][0]["image_dir"] == str(tmp_path.resolve() / "a")


def test_args_config_contains_only_known_options(simple_project: Path) -> None:
    from lora_tui.core.tomlio import parse_plain
    from lora_tui.core.train_args import known_args

    generated = configs.write(project.load(simple_project))
    flat = {k: v for table in parse_plain(generated.args_config).values() for k, v in table.items()}
    assert set(flat) <= set(known_args())
    assert flat["dataset_config"] == str(generated.dataset_config)
    assert flat["output_dir"].startswith(str(simple_project.resolve()))


def test_list_options_are_written_as_lists(simple_project: Path) -> None:
    proj = project.load(simple_project)
    proj.training["text_encoder_lr"] = 5e-5
    proj.training["network_args"] = ["conv_dim=4"]
    text = configs.build(proj).args_text
    assert "text_encoder_lr = [5e-05]" in text and 'network_args = ["conv_dim=4"]' in text


def test_launch_command_names_train_network_and_args(simple_project: Path) -> None:
    proj = project.load(simple_project)
    proj.launch["num_processes"] = 2
    generated = configs.build(proj)
    assert generated.argv[:2] == ["accelerate", "launch"]
    assert "--multi_gpu" in generated.argv and generated.argv[-3].endswith("train_network.py")
    assert generated.argv[-2:] == ["--config_file", str(generated.args_config)]


def test_project_names_become_safe_file_names() -> None:
    assert configs.safe_name("../../etc/passwd") == "etc-passwd"
    assert configs.safe_name("Judy (v2)") == "Judy-v2"
    assert configs.safe_name("...") == "project"


def test_warmup_steps_stay_integers_and_ratios_stay_floats(simple_project: Path) -> None:
    proj = project.load(simple_project)
    proj.training["lr_warmup_steps"] = 100
    proj.training["network_alpha"] = 8
    text = configs.build(proj).args_text
    assert "lr_warmup_steps = 100\n" in text and "network_alpha = 8.0\n" in text


def test_hub_ids_pass_through_and_local_paths_resolve(simple_project: Path) -> None:
    from lora_tui.core import lint

    proj = project.load(simple_project)
    proj.model["pretrained_model_name_or_path"] = "runwayml/stable-diffusion-v1-5"
    assert proj.model_path is None and proj.model_hub_id == "runwayml/stable-diffusion-v1-5"
    assert 'pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"' in configs.build(proj).args_text
    assert "model-hub" in {f.code for f in lint.check_project(proj).findings}
    (simple_project / "models" / "sd15").mkdir(parents=True)
    proj.model["pretrained_model_name_or_path"] = "models/sd15"
    assert proj.model_path == simple_project.resolve() / "models" / "sd15"


@pytest.mark.parametrize("key,value,message", [
    ("output_dir", "/tmp/elsewhere", "points outside the project"),
    ("logging_dir", "../logs", "points outside the project"),
    ("output_name", "../../evil", "not a plain file name"),
])
def test_training_outputs_stay_inside_the_project(simple_project: Path, key: str, value: str, message: str) -> None:
    proj = project.load(simple_project)
    proj.training[key] = value
    with pytest.raises(ConfigError, match=message):
        configs.build(proj)


def test_update_validates_saves_and_keeps_comments(tmp_path: Path) -> None:
    proj = project.load(_write(tmp_path, GOOD))
    proj = project.update(proj, ("datasets", 0, "subsets", 0), "num_repeats", 4)
    proj = project.update(proj, ("training",), "network_dim", 32)
    text = (tmp_path / "lora-tui.toml").read_text()
    assert "num_repeats = 4" in text and "network_dim = 32" in text and "# keep this comment" in text
    assert proj.subsets[0].get("num_repeats") == 4
    with pytest.raises(ConfigError, match="at least 1"):
        project.update(proj, ("datasets", 0), "batch_size", 0)
    assert "batch_size = 2" in (tmp_path / "lora-tui.toml").read_text()  # untouched on error
    proj = project.update(proj, ("training",), "network_dim", None)
    assert "network_dim" not in (tmp_path / "lora-tui.toml").read_text()

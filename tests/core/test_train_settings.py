"""The trainer settings table: one owner for each option's type, default and range."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_tui.cli import main
from lora_tui.core import project, steps, train_settings
from lora_tui.core.errors import ConfigError
from lora_tui.core.train_args import known_args
from tests.helpers import write_images, write_project

ROOT = Path(__file__).resolve().parents[2]
TRAINING = {"network_module": "networks.lora", "learning_rate": 1e-4, "max_train_epochs": 10}


def _project(root: Path, *, repeats: int = 2, **training: object) -> Path:
    write_images(root / "data", [(64, 64)] * 2)
    return write_project(root, [{"resolution": 64, "batch_size": 1, "subsets": [
        {"image_dir": "data", "num_repeats": repeats, "class_tokens": "dog"}]}], training={**TRAINING, **training})


def test_every_row_is_a_train_network_option_with_its_type_and_help() -> None:
    args = known_args()
    assert set(train_settings.SETTINGS) <= set(args)  # the type is sd-scripts' own, read off its parser
    for row in train_settings.SETTINGS.values():
        assert row.kind in ("int", "float", "flag", "str", "choice", "list") and row.help
        assert row.range_text() == "any" or row.kind in ("int", "float", "list")  # ranges only on numbers


def test_defaults_are_sd_scripts_except_where_it_reads_unset_as_something_else() -> None:
    differ = {name for name, row in train_settings.SETTINGS.items() if row.default != known_args()[name]["default"]}
    # None → 4, "" → AdamW, None → "last", None → "network_train" (what sd-scripts does with each)
    assert differ == {"network_dim", "optimizer_type", "output_name", "log_tracker_name"}


def test_1600_and_other_defaults_are_written_only_in_the_settings_table() -> None:
    pattern = re.compile(r"\b1600\b|1,600|\b2e-6\b|or 4\)|or \"AdamW\"|or \"last\"")
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "lora_tui").rglob("*.py") if pattern.search(p.read_text())]
    assert hits == ["lora_tui/core/train_settings.py"]


def test_check_refuses_network_dropout_2_naming_the_key_and_range(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path, network_dropout=2)
    assert main(["check", str(root)]) == 2
    err = capsys.readouterr().err
    assert "training.network_dropout" in err and "allowed: 0.0 to 1.0" in err


def test_the_config_screen_save_refuses_what_the_trainer_would(tmp_path: Path) -> None:
    proj = project.load(_project(tmp_path))
    with pytest.raises(ConfigError, match=r"network_dropout: must be at most 1\.0, got 2"):
        project.update(proj, ("training",), "network_dropout", 2)
    with pytest.raises(ConfigError, match="seed: must be at most 4,294,967,295"):
        project.update(proj, ("training",), "seed", 2**40)


def test_the_trainer_refuses_with_the_same_words_as_check() -> None:
    from lora_tui.core.errors import TrainError
    from lora_tui.train.loop.args import parse_args

    with pytest.raises(TrainError, match=re.escape(train_settings.range_problem("network_dropout", 2.0))):
        parse_args(["--network_dropout", "2", "--dataset_config", "d.toml",
                    "--pretrained_model_name_or_path", "m"])


@pytest.mark.parametrize(("key", "value"), [("max_train_epochs", 10**12), ("max_train_steps", 10**15)])
def test_absurd_training_lengths_are_range_errors(tmp_path: Path, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"{key}: must be at most"):
        project.load(_project(tmp_path, **{key: value}))


def test_train_refuses_an_absurd_max_train_steps_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(root), "--max-train-steps", str(10**15)])
    assert exc.value.code == 2
    assert "--max-train-steps: must be at most 100,000,000" in capsys.readouterr().err
    assert not (root / "runs").exists()


def test_steps_with_1e18_repeats_answers_at_once_with_a_range_error(tmp_path: Path) -> None:
    root = _project(tmp_path, repeats=10**18)
    done = subprocess.run([sys.executable, "-m", "lora_tui", "steps", str(root)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert "num_repeats: must be at most 10,000" in done.stderr


def _sd_scripts_balance(own: list[int], num_train: int) -> list[int]:
    """sd-scripts' loop (train_util.DreamBoothDataset), one turn per sample."""
    repeats, n, first, used = [0] * len(own), 0, True, len(own)
    while n < num_train:
        for i in range(used):
            if first:
                repeats[i], used_now = own[i], i + 1
                n += own[i]
            else:
                repeats[i] += 1
                n += 1
            if n >= num_train:
                break
        if first:
            used = used_now
        first = False
    return repeats[:used]


def _balance(own: list[int], num_train: int) -> list[int]:
    entry = SimpleNamespace(used_samples=0)
    reg = [(f"img{i}", entry, count, None) for i, count in enumerate(own)]
    return [count for _, _, count in steps._balance_reg(reg, num_train)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("own", "num_train"), [([1] * 100, 540), ([7] * 300, 540), ([1, 2, 3], 2), ([2, 5], 30),
                                                ([3, 1, 4, 1, 5], 14), ([1] * 4, 4), ([5], 1)])
def test_regularization_balancing_matches_sd_scripts(own: list[int], num_train: int) -> None:
    assert _balance(own, num_train) == _sd_scripts_balance(own, num_train)


def test_regularization_balancing_is_closed_form_for_huge_counts() -> None:
    assert _balance([1, 1, 1], 10**12) == [333_333_333_334, 333_333_333_333, 333_333_333_333]

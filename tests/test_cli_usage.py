"""Typos on the command line: one line naming the closest command or option, exit 2, no usage dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tui import cli


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("lora-tui: error: "), err
    assert "usage:" not in err
    return lines[0]


def test_a_misspelt_command_names_the_command_it_resembles(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no folder called "chekc" here
    line = _usage_error(capsys, ["chekc", "judy"])
    assert "unknown command 'chekc'" in line and "did you mean 'check'" in line


def test_a_misspelt_command_alone_is_not_opened_as_a_project(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "did you mean 'train'" in _usage_error(capsys, ["trian"])


def test_a_word_that_is_a_project_folder_still_opens_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chekc").mkdir()
    assert cli.parse(["chekc"]).func is cli.cmd_open


def test_a_misspelt_option_names_the_option_it_resembles(capsys, simple_project: Path) -> None:
    line = _usage_error(capsys, ["check", str(simple_project), "--stirct"])
    assert "check: unknown option '--stirct'" in line and "did you mean '--strict'" in line


def test_a_misspelt_option_is_reported_before_a_missing_argument(capsys) -> None:
    line = _usage_error(capsys, ["check", "--stirct"])
    assert "did you mean '--strict'" in line and "required" not in line


def test_a_misspelt_captions_operation_names_the_operation(capsys, simple_project: Path) -> None:
    line = _usage_error(capsys, ["captions", str(simple_project), "stast"])
    assert "unknown value 'stast'" in line and "did you mean 'stats'" in line


def test_a_misspelt_captions_option_names_the_option(capsys, simple_project: Path) -> None:
    line = _usage_error(capsys, ["captions", str(simple_project), "trigger", "dog", "--create-mising"])
    assert "did you mean '--create-missing'" in line


def test_a_missing_argument_is_one_line(capsys) -> None:
    assert "required: project" in _usage_error(capsys, ["check"])


def test_a_missing_path_is_left_to_open_even_when_it_resembles_a_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.parse(["./chekc"]).func is cli.cmd_open


def test_options_of_a_sub_subcommand_are_known_and_its_typos_named(capsys, tmp_path: Path) -> None:
    args = cli.parse(["lora", "inspect", str(tmp_path / "x.safetensors"), "--json"])
    assert args.json is True
    line = _usage_error(capsys, ["lora", "inspect", str(tmp_path / "x.safetensors"), "--jsn"])
    assert "unknown option '--jsn'" in line and "did you mean '--json'" in line

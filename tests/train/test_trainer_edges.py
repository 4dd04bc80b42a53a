"""Edge cases found by attacking the trainer: bad values, odd resumes, pruning, early stops, dead trainers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from lora_tui.core.errors import TrainError
from lora_tui.train.__main__ import main as trainer_main
from lora_tui.train.loop.args import parse_args
from tests.train.trainer_helpers import events, run_training, status, tiny_project, train_argv

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture
def _restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("flag", [["--network_dim", "-4"], ["--seed", "-5"], ["--learning_rate", "-1"],
                                  ["--max_train_epochs", "-1"], ["--save_every_n_steps", "-1"],
                                  ["--network_dim", "0"], ["--max_train_steps", "x"]])
def test_out_of_range_or_mistyped_flags_are_one_line_errors_with_a_failed_status(
        flag: list[str], tmp_path: Path, tiny_model_dir: Path, capsys, _restore_signals) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    run = tmp_path / "run"
    assert trainer_main([*train_argv(root, *flag), "--run_dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag[0] in err and "usage" not in err
    assert status(run)["state"] == "failed" and flag[0] in status(run)["reason"]
    assert [e["kind"] for e in events(run)] == ["error", "end"]


def test_out_of_range_config_file_value_names_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    argv = train_argv(root)
    args_toml = Path(argv[argv.index("--config_file") + 1])
    args_toml.write_text(args_toml.read_text().replace("network_dim = 4", "network_dim = -4"))
    with pytest.raises(TrainError, match=r"args\.toml: network_dim: must be at least 1"):
        parse_args(argv)


def test_resume_from_a_final_state_trains_on_to_a_longer_max_train_steps(tmp_path: Path,
                                                                          tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 6,
                                                                  "save_state_on_train_end": True})
    assert run_training(train_argv(root), tmp_path / "a") == 0
    state = tmp_path / "a" / "state" / "tiny-state"
    assert json.loads((state / "train_state.json").read_text())["current_epoch"] == 2  # past the planned epoch
    assert run_training(train_argv(root, "--resume", str(state)), tmp_path / "same") == 0  # nothing left to do
    assert status(tmp_path / "same")["state"] == "finished"
    assert run_training(train_argv(root, "--resume", str(state), "--max_train_steps", "8"), tmp_path / "b") == 0
    assert [e["step"] for e in events(tmp_path / "b") if e["kind"] == "step"] == [7, 8]


def test_resume_with_another_optimizer_type_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 2,
                                                                  "save_state_on_train_end": True})
    assert run_training(train_argv(root), tmp_path / "a") == 0
    state = tmp_path / "a" / "state" / "tiny-state"
    argv = train_argv(root, "--resume", str(state), "--max_train_steps", "4", "--optimizer_type", "SGDNesterov")
    assert run_training(argv, tmp_path / "b") == 1
    error = next(e for e in events(tmp_path / "b") if e["kind"] == "error")
    assert "saved with optimizer AdamW" in error["message"] and error["code"] != "crash"


def test_save_last_n_steps_prunes_the_states_as_well(tmp_path: Path, tiny_model_dir: Path) -> None:
    training = {"max_train_steps": 10, "save_every_n_steps": 2, "save_last_n_steps": 3, "save_state": True,
                "save_model_as": "ckpt"}
    root = tiny_project(tmp_path / "p", tiny_model_dir, training=training)
    assert run_training(train_argv(root), tmp_path / "run") == 0
    assert sorted(p.name for p in (root / "output").iterdir()) == [
        "tiny-step00000006.ckpt", "tiny-step00000008.ckpt", "tiny.ckpt"]
    assert sorted(p.name for p in (tmp_path / "run" / "state").iterdir()) == [
        "tiny-state", "tiny-step00000006-state", "tiny-step00000008-state"]


def test_a_signal_before_the_first_step_ends_stopped_without_saving(tmp_path: Path, tiny_model_dir: Path,
                                                                     _restore_signals) -> None:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from lora_tui.train.loop.train import train

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    run = tmp_path / "run"
    # what __main__.catch_early_signals records when Ctrl-C comes while torch is still importing
    assert train(parse_args(train_argv(root)), run, early_signals=[signal.SIGINT]) == 130
    final = status(run)
    assert final["state"] == "stopped" and "SIGINT before the first step" in final["reason"]
    assert not any(e["kind"] == "step" for e in events(run))
    assert not (root / "output").exists() or not any((root / "output").iterdir())


def test_empty_and_cut_short_images_are_left_out_by_name(tmp_path: Path, tiny_model_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, kind="class")
    folder = root / "data" / "b"
    argv = train_argv(root)  # the configs first: the project's own staging would leave them out already
    (folder / "empty.png").write_bytes(b"")
    whole = (folder / "img0000.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    assert run_training(argv, tmp_path / "run") == 0
    (warn,) = [e for e in events(tmp_path / "run") if e.get("code") == "unreadable_images"]
    assert sorted(Path(p).name for p in warn["paths"]) == ["cut.png", "empty.png"]
    assert "2 unreadable image(s) left out" in warn["message"]
    log = capsys.readouterr().out
    assert f"left out {folder / 'empty.png'}: image file is empty" in log
    assert f"left out {folder / 'cut.png'}: PNG is truncated" in log
    start = next(e for e in events(tmp_path / "run") if e["kind"] == "start")
    assert start["steps_per_epoch"] == 4  # the 4 good images × 2 repeats at batch 2: the others are not counted

"""SdScriptsFollower: real sd-scripts output (tests/runs/fixtures, see its README) into run-contract events."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from lora_tui.runs.sdscripts_log import MAX_LINE, RECENT_LINES, SdScriptsFollower
from tests.runs.helpers_sdlog import FIXTURES, NOW, fixture, follow, of_kind, random_chunks, without_t

ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.log"))
FINISHED = "sd_scripts_finished_2epochs.log"
STATE = "sd_scripts_save_every_step_with_state.log"


def steps(events: list[dict]) -> list[tuple[int, int, float | None]]:
    return [(e["step"], e["epoch"], e["loss_avg"]) for e in of_kind(events, "step")]


def outline(events: list[dict]) -> list[tuple]:
    """(kind, step, type, file name) of every event but start/step, in order."""
    return [(e["kind"], e.get("step"), e.get("type"), PurePosixPath(e["path"]).name if "path" in e else None)
            for e in events if e["kind"] not in ("start", "step")]


# ---------------------------------------------------------------------------------------- any chunking

@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_any_chunking_gives_the_same_events(name: str) -> None:
    data = fixture(name)
    whole, _ = follow(data)
    assert follow(random_chunks(data, seed=7))[0] == whole
    assert follow([data[i:i + 1] for i in range(len(data))])[0] == whole


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_events_are_strict_json_stamped_with_now(name: str) -> None:
    events, _ = follow(fixture(name))
    assert events
    for event in events:
        json.dumps(event, allow_nan=False)
        assert event["t"] == NOW and isinstance(event["kind"], str)


# ---------------------------------------------------------------------------------------- a finished run

def test_start_is_the_running_training_summary() -> None:
    events, follower = follow(fixture(FINISHED))
    assert without_t(of_kind(events, "start")) == [{
        "kind": "start", "backend": "sd-scripts", "total_steps": 6, "steps_per_epoch": 3, "epochs": 2,
        "batch_size": 1, "gradient_accumulation_steps": 1, "num_train_images": 3, "num_reg_images": 0,
        "num_val_images": 0, "batches_per_epoch": 3}]
    assert events[0]["kind"] == "start"
    assert follower.summary == {"num_train_images": 3, "num_reg_images": 0, "batches_per_epoch": 3, "epochs": 2,
                                "batch_size": 1, "grad_accum": 1, "total_steps": 6, "num_val_images": 0}


def test_each_step_once_with_the_average_loss_shown_after_it() -> None:
    # The bar shows 2/6 first with step 1's avr_loss (1.19), then 2/6 with 1.16: the event carries 1.16.
    events, _ = follow(fixture(FINISHED))
    assert steps(events) == [(1, 1, 1.19), (2, 1, 1.16), (3, 1, 1.17), (4, 2, 1.15), (5, 2, 1.15), (6, 2, 1.13)]
    assert {(e["loss"], e["lr"], e["total_steps"]) for e in of_kind(events, "step")} == {(None, None, 6)}


def test_epoch_checkpoint_sample_and_final_save_in_order() -> None:
    events, _ = follow(fixture(FINISHED))
    assert outline(events) == [
        ("save", 3, "lora", "judy-000001.safetensors"), ("sample", 3, None, None),
        ("sample", 6, None, None), ("save", 6, "lora", "judy.safetensors")]
    assert of_kind(events, "save")[0]["path"] == "/work/sdscripts-runs/a/output/judy-000001.safetensors"
    assert of_kind(events, "save")[0]["epoch"] == 1


def test_sample_prompts_come_from_the_prompt_lines_including_japanese() -> None:
    events, _ = follow(fixture(FINISHED))
    for sample in of_kind(events, "sample"):
        assert sample["prompts"] == ["sks dog, sitting on grass", "sks dog, 日本語のテキスト, running"]
        assert sample["paths"] == []


def test_a_finished_run_is_a_success() -> None:
    events, follower = follow(fixture(FINISHED))
    assert follower.saw_model_saved and follower.failure_reason() is None
    assert not of_kind(events, "error") and not of_kind(events, "warn")
    assert (follower.step, follower.epoch, follower.total_steps, follower.loss_avg) == (6, 2, 6, 1.13)
    assert follower.last_save == "/work/sdscripts-runs/a/output/judy.safetensors"
    assert follower.nan_at is None and not follower.oom


@pytest.mark.parametrize(("wrapped", "plain", "case"), [
    ("sd_scripts_finished_2epochs_80col.log", FINISHED, "a"),
    ("sd_scripts_save_every_step_with_state_80col.log", STATE, "b"),
])
def test_rich_80_column_wrapping_gives_the_same_events(wrapped: str, plain: str, case: str) -> None:
    # Without COLUMNS, Rich folds long paths mid-word over continuation lines; they are joined back.
    wrapped_events, _ = follow(fixture(wrapped))
    expected = json.loads(json.dumps(follow(fixture(plain))[0]).replace(f"/{case}/output", f"/{case}80/output"))
    assert wrapped_events == expected


# ---------------------------------------------------------------------------------------- saves and state

def test_step_saves_state_saves_and_removals_in_the_order_printed() -> None:
    events, follower = follow(fixture(STATE))
    assert outline(events) == [
        ("save", 1, "lora", "judy-step00000001.safetensors"), ("save", 1, "state", "judy-step00000001-state"),
        ("sample", 2, None, None),
        ("save", 2, "lora", "judy-step00000002.safetensors"), ("save", 2, "state", "judy-step00000002-state"),
        ("save", 3, "lora", "judy-step00000003.safetensors"), ("save", 3, "state", "judy-step00000003-state"),
        ("save", 3, "lora", "judy-000001.safetensors"), ("save", 3, "state", "judy-000001-state"),
        ("sample", 4, None, None),
        ("save", 4, "lora", "judy-step00000004.safetensors"), ("save", 4, "state", "judy-step00000004-state"),
        ("remove", 4, "state", "judy-step00000001-state"), ("remove", 4, "lora", "judy-step00000001.safetensors"),
        ("save", 4, "state", "judy-state"), ("save", 4, "lora", "judy.safetensors")]
    assert of_kind(events, "save")[1]["path"] == "/work/sdscripts-runs/b/output/judy-step00000001-state"
    assert follower.saw_model_saved


def test_a_step_based_sample_and_save_come_before_that_steps_event() -> None:
    # sd-scripts samples and saves between the bar's two draws of step 2; the step event waits for the second.
    events, _ = follow(fixture(STATE))
    order = [(e["kind"], e.get("type")) for e in events if e.get("step") == 2]
    assert order == [("sample", None), ("save", "lora"), ("save", "state"), ("step", None)]
    assert of_kind(events, "sample")[0]["prompts"] == ["sks dog, on a sofa"]
    assert steps(events) == [(1, 1, 1.19), (2, 1, 1.16), (3, 1, 1.17), (4, 2, 1.15)]


def test_resume_names_the_state_and_the_bar_stops_short_of_the_total() -> None:
    events, follower = follow(fixture("sd_scripts_resume_from_epoch1_state.log"))
    start = of_kind(events, "start")[0]
    assert (start["resume_step"], start["resume_path"]) == (3, "/work/sdscripts-runs/b/output/judy-000001-state")
    assert steps(events) == [(1, 2, 1.13), (2, 2, 1.12), (3, 2, 1.13)]
    assert follower.total_steps == 6 and follower.step == 3 and follower.saw_model_saved


# ---------------------------------------------------------------------------------------- failures

def test_traceback_reason_is_the_trainers_exception_not_accelerates_wrapper() -> None:
    events, follower = follow(fixture("sd_scripts_bad_network_module_traceback.log"))
    assert follower.failure_reason() == "ModuleNotFoundError: No module named 'networks.lora_typo'"
    assert without_t(events) == [{"kind": "error", "code": "traceback",
                                  "message": "ModuleNotFoundError: No module named 'networks.lora_typo'"}]
    assert follower.summary is None and not follower.saw_model_saved


def test_no_data_found_is_an_error_although_sd_scripts_exits_0() -> None:
    events, follower = follow(fixture("sd_scripts_missing_image_dir_exit0.log"))
    reason = ("No data found. Please verify arguments (train_data_dir must be the parent of folders with "
              "images)")
    assert without_t(events) == [
        {"kind": "warn", "code": "ignored_subset", "message":
         "ignore subset with image_dir='/work/sdscripts-runs/data/does-not-exist': no images found"},
        {"kind": "error", "code": "no_data", "message": reason}]
    assert follower.failure_reason() == reason


def test_nan_is_reported_at_the_step_it_appears_with_the_last_save_before_it() -> None:
    events, follower = follow(fixture("sd_scripts_nan_lr1e30.log"))
    assert follower.nan_at == 3
    assert without_t(of_kind(events, "error")) == [{
        "kind": "error", "code": "nan", "step": 3, "message": "avr_loss became nan at step 3",
        "last_good_save": "/work/sdscripts-runs/e/output/judy-step00000002.safetensors"}]
    error_at = events.index(of_kind(events, "error")[0])
    assert events[error_at - 1]["kind"] == "step" and events[error_at - 1]["step"] == 3


def test_a_nan_average_is_null_in_the_event_with_the_raw_text_beside_it() -> None:
    events, _ = follow(fixture("sd_scripts_nan_lr1e30.log"))
    assert steps(events) == [(1, 1, 1.19), (2, 1, 1.17), (3, 1, None), (4, 2, None), (5, 2, None)]
    assert [e.get("loss_avg_raw") for e in of_kind(events, "step")] == [None, None, "nan", "nan", "nan"]


def test_grad_accumulation_counts_optimizer_steps_not_micro_batches() -> None:
    events, _ = follow(fixture("sd_scripts_grad_accum2_no_prompt_file.log"))
    start = of_kind(events, "start")[0]
    assert (start["batches_per_epoch"], start["gradient_accumulation_steps"], start["steps_per_epoch"]) == (3, 2, 2)
    assert steps(events) == [(1, 1, 1.17), (2, 1, 1.17), (3, 2, 1.15), (4, 2, 1.13)]


def test_a_missing_prompt_file_warns_once_and_makes_no_sample() -> None:
    events, _ = follow(fixture("sd_scripts_grad_accum2_no_prompt_file.log"))
    message = "No prompt file: /work/sdscripts-runs/no-such-prompts.txt"
    assert without_t(of_kind(events, "warn")) == [{"kind": "warn", "code": "no_prompt_file", "message": message}]
    assert not of_kind(events, "sample")


def test_sigint_is_an_interruption_not_a_traceback_error() -> None:
    events, follower = follow(fixture("sd_scripts_sigint_mid_training.log"))
    assert follower.failure_reason() == "KeyboardInterrupt"
    assert without_t(events[-1:]) == [{"kind": "warn", "code": "interrupted",
                                       "message": "training interrupted (SIGINT): KeyboardInterrupt"}]
    assert not of_kind(events, "error") and not follower.saw_model_saved
    assert steps(events) == [(1, 1, 1.19)]


def test_synthetic_oom_is_recognised_once_with_the_knobs_to_turn() -> None:
    events, follower = follow(fixture("sd_scripts_oom_synthetic.log"))
    errors = of_kind(events, "error")
    assert [(e["code"], e["step"]) for e in errors] == [("oom", 1)]
    for knob in ("train_batch_size", "gradient_checkpointing", "cache_latents", "resolution", "mixed precision"):
        assert knob in errors[0]["message"]
    assert errors[0]["detail"].startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 640.00 MiB.")
    assert follower.oom
    assert follower.failure_reason().startswith("torch.OutOfMemoryError: CUDA out of memory.")


# ---------------------------------------------------------------------------------------- robustness

def bar(counter: int, total: int, postfix: str = "", times: str = "00:09<00:46,  9.37s/it", desc: str = "steps") -> str:
    return f"\r{desc}: {100 * counter // total:3d}%|██        | {counter}/{total} [{times}{postfix}]"


def test_validation_bars_are_not_training_steps() -> None:
    text = bar(1, 4, ", val_avg_loss=0.1", desc="validation steps") + bar(2, 4, desc="epoch validation steps") + "\n"
    events, follower = follow(text.encode())
    assert not events and follower.step == 0


@pytest.mark.parametrize("times", ["00:00<?, ?it/s", "1:02:15<5172:34:35, 27.70s/it", "10:00<00:01,  1.00it/s",
                                   "00:03<00:00, 3057.85it/s"])
def test_bar_time_and_rate_forms(times: str) -> None:
    events, _ = follow((bar(5, 10, ", avr_loss=0.0912", times) + "\n").encode())
    assert steps(events) == [(5, 0, 0.0912)]


def test_a_counter_jump_is_one_event_without_invented_steps() -> None:
    events, _ = follow((bar(1, 100, ", avr_loss=0.5") + bar(7, 100, ", avr_loss=0.4") + "\n").encode())
    assert [e["step"] for e in of_kind(events, "step")] == [1, 7]


def test_other_postfix_keys_do_not_hide_avr_loss() -> None:
    text = bar(3, 9, ", Average key norm=0.512, Keys Scaled=3, avr_loss=0.0912") + "\n"
    assert steps(follow(text.encode())[0]) == [(3, 0, 0.0912)]


def test_ansi_escapes_and_cursor_up_are_ignored() -> None:
    text = ("\n\x1b[A\x1b[32msaving checkpoint: /o/judy.safetensors\x1b[0m\n\r 25%|██▌       | 1/4 [00:05<00:16]\x1b[A"
            + bar(2, 4, ", avr_loss=1.0") + "\n")
    events, _ = follow(text.encode())
    assert [(e["kind"], e["step"]) for e in events] == [("save", 0), ("step", 2)]
    assert of_kind(events, "save")[0]["path"] == "/o/judy.safetensors"


def test_a_crlf_split_between_chunks_is_one_line_break() -> None:
    # An extra empty line would end the Rich record before its continuation line.
    head = " " * 20 + "INFO     " + "prompt: a long".ljust(30) + " train_util.py:6542"
    chunks = [b"\ngenerating sample images at step / x: 2\r\n",
              head.encode() + b"\r", b"\n" + (" " * 29 + "prompt tail").encode() + b"\r\n", b"model saved.\n"]
    events, _ = follow(chunks)
    assert of_kind(events, "sample")[0]["prompts"] == ["a long prompt tail"]


def test_utf8_split_anywhere_decodes_the_same() -> None:
    data = "saving checkpoint: /データ/日本語.safetensors\n".encode()
    for cut in range(1, len(data)):
        events, _ = follow([data[:cut], data[cut:]])
        assert of_kind(events, "save")[0]["path"] == "/データ/日本語.safetensors"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    events, _ = follow(b"saving checkpoint: /o/\xff\xfejudy.safetensors\n")
    assert of_kind(events, "save")[0]["path"] == "/o/\ufffd\ufffdjudy.safetensors"


def test_a_complete_bar_draw_counts_before_its_line_ends() -> None:
    # tqdm ends a draw only with the next draw's \r: a slow step must not be reported one step late.
    follower = SdScriptsFollower()
    assert follower.feed(bar(1, 6).encode(), 1.0) == []
    events = follower.feed(bar(1, 6, ", avr_loss=1.19").encode(), 2.0)
    assert [(e["kind"], e["step"], e["loss_avg"], e["t"]) for e in events] == [("step", 1, 1.19, 2.0)]
    assert follower.feed(b"\n", 3.0) == [] and follower.finish(4.0) == []


def test_a_step_event_waits_for_its_own_postfix_draw_until_the_end() -> None:
    follower = SdScriptsFollower()
    assert follower.feed((bar(1, 6, ", avr_loss=1.0") + bar(2, 6, ", avr_loss=1.0")).encode(), 1.0) != []
    assert [(e["step"], e["t"]) for e in follower.finish(5.0)] == [(2, 5.0)]


def test_a_line_without_breaks_is_cut_and_memory_stays_bounded() -> None:
    follower = SdScriptsFollower()
    for _ in range(40):
        follower.feed(b"x" * 100_000, 0.0)
    assert len(follower._partial) <= MAX_LINE
    for i in range(5000):
        follower.feed(f"line {i}\n".encode(), 0.0)
    assert len(follower.recent_lines) == RECENT_LINES and follower.recent_lines[-1] == "line 4999"


def test_several_datasets_give_a_batch_size_list() -> None:
    text = ("running training / 学習開始\n  num batches per epoch / 1epochのバッチ数: 7\n  num epochs / epoch数: 2\n"
            "  batch size per device / バッチサイズ: 4, 2\n"
            "  gradient accumulation steps / 勾配を合計するステップ数 = 3\n"
            "  total optimization steps / 学習ステップ数: 6\n")
    start = of_kind(follow(text.encode())[0], "start")[0]
    assert (start["batch_size"], start["steps_per_epoch"], start["total_steps"]) == ([4, 2], 3, 6)


def test_a_trainer_killed_without_traceback_is_named_from_accelerates_wrapper() -> None:
    text = ("Traceback (most recent call last):\n  File \"/x/accelerate\", line 8, in <module>\n"
            "subprocess.CalledProcessError: Command '['python', 'train_network.py']' died with <Signals.SIGKILL: 9>.\n")
    events, follower = follow(text.encode())
    assert follower.failure_reason() == "the training process died with SIGKILL (no traceback)"
    assert [e["code"] for e in of_kind(events, "error")] == ["traceback"]


def test_an_exception_message_ending_in_a_colon_keeps_its_next_line() -> None:
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
            "RuntimeError: Failed to import diffusers.loaders.peft because of the following error:\n"
            "Could not import module 'PreTrainedModel'.\nsaving checkpoint: /o/x.safetensors\n")
    events, follower = follow(text.encode())
    assert follower.failure_reason() == ("RuntimeError: Failed to import diffusers.loaders.peft because of the "
                                         "following error:\nCould not import module 'PreTrainedModel'.")
    assert of_kind(events, "save")[0]["path"] == "/o/x.safetensors"


def test_a_traceback_before_model_saved_is_not_a_failure() -> None:
    text = ("Traceback (most recent call last):\n  File \"w.py\", line 1, in <module>\nValueError: worker hiccup\n\n"
            "saving checkpoint: /o/judy.safetensors\nmodel saved.\n")
    events, follower = follow(text.encode())
    assert follower.failure_reason() is None and not of_kind(events, "error")


def test_sigint_to_the_launcher_alone_leaves_the_trainer_training_to_the_end() -> None:
    # accelerate's launcher dies of SIGINT (its KeyboardInterrupt traceback) but its child is not signalled.
    events, follower = follow(fixture("sd_scripts_sigint_launcher_only.log"))
    assert [e["step"] for e in of_kind(events, "step")] == [1, 2, 3, 4, 5, 6]
    assert follower.saw_model_saved and follower.failure_reason() is None
    assert not of_kind(events, "warn") and not of_kind(events, "error")

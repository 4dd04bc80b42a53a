"""The built-in trainer end to end on tiny models: files, events, resume, stop, NaN, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lora_tui.core.errors import TrainError
from lora_tui.train.loop.args import parse_args
from lora_tui.train.network.file import load_lora
from tests.train.trainer_helpers import events, run_training, status, tiny_project, train_argv

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.mark.parametrize("kind", ["caption", "class", "finetune"])
def test_each_dataset_kind_trains_to_a_lora_with_events(kind: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, kind=kind, reg=kind == "class")
    run = tmp_path / "run"
    assert run_training(train_argv(root), run) == 0
    out = root / "output" / "tiny.safetensors"
    weights, meta = load_lora(out)
    assert any(k.startswith("lora_unet_") for k in weights) and any(k.startswith("lora_te_") for k in weights)
    assert meta["ss_network_dim"] == "4" and meta["ss_steps"] == "6" and meta["ss_base_model_version"] == "sd_v1"
    kinds = [e["kind"] for e in events(run)]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 6 and "save" in kinds
    step = next(e for e in events(run) if e["kind"] == "step")
    assert set(step) >= {"t", "step", "epoch", "loss", "loss_avg", "lr", "samples_per_s", "mem_alloc_mb",
                         "mem_peak_mb"}
    assert set(step["lr"]) == {"textencoder", "unet"} and math.isfinite(step["loss"])
    assert status(run)["state"] == "finished" and status(run)["last_step"] == 6


def test_the_lora_changes_with_training_and_keeps_sd_scripts_names_and_alpha(tmp_path: Path,
                                                                             tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"network_alpha": 2.0})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    weights, meta = load_lora(root / "output" / "tiny.safetensors")
    ups = [v for k, v in weights.items() if k.endswith(".lora_up.weight")]
    assert any(float(u.abs().sum()) > 0 for u in ups)  # trained away from the zero init
    alphas = {float(v) for k, v in weights.items() if k.endswith(".alpha")}
    assert alphas == {2.0}
    assert "lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in weights
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight" in weights
    assert meta["ss_network_alpha"] == "2.0" and "sks" in meta["ss_tag_frequency"]


def test_save_then_resume_continues_the_step_count_and_data_order(tmp_path: Path, tiny_model_dir: Path) -> None:
    training = {"max_train_steps": 8, "save_every_n_steps": 4, "save_state": True}
    whole = tiny_project(tmp_path / "whole", tiny_model_dir, training=training)
    assert run_training(train_argv(whole), tmp_path / "run-whole") == 0
    part = tiny_project(tmp_path / "part", tiny_model_dir, training=training)
    assert run_training(train_argv(part), tmp_path / "run-a") == 0
    state = tmp_path / "run-a" / "state" / "tiny-step00000004-state"  # the run folder keeps states
    assert state.is_dir()
    assert run_training(train_argv(part, "--resume", str(state)), tmp_path / "run-b") == 0
    resumed = [e for e in events(tmp_path / "run-b") if e["kind"] == "step"]
    assert [e["step"] for e in resumed] == [5, 6, 7, 8]
    full = [e for e in events(tmp_path / "run-whole") if e["kind"] == "step"]
    # same data, same RNG, same optimizer state: the resumed steps reproduce the uninterrupted run
    assert [round(e["loss"], 4) for e in resumed] == [round(e["loss"], 4) for e in full[4:]]
    before, _ = load_lora(part / "output" / "tiny-step00000004.safetensors")
    after, _ = load_lora(part / "output" / "tiny.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_every_scheduler_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    for name in ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"):
        extra = {"lr_scheduler": name, "max_train_steps": 3}
        if name != "constant":
            extra["lr_warmup_steps"] = 1
        root = tiny_project(tmp_path / name, tiny_model_dir, training=extra)
        assert run_training(train_argv(root), tmp_path / f"run-{name}") == 0, name
        lrs = [e["lr"]["unet"] for e in events(tmp_path / f"run-{name}") if e["kind"] == "step"]
        assert len(lrs) == 3


@pytest.mark.parametrize("optimizer", ["AdamW", "Lion", "SGDNesterov", "AdaFactor"])
def test_every_installed_optimizer_takes_steps(optimizer: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"optimizer_type": optimizer, "max_train_steps": 2})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    assert status(tmp_path / "run")["state"] == "finished"


def test_a_missing_optional_optimizer_names_the_package(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("torch")
    try:
        import prodigyopt  # noqa: F401
        pytest.skip("prodigyopt is installed here")
    except ImportError:
        pass
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"optimizer_type": "Prodigy"})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    end = events(tmp_path / "run")[-2]
    assert end["kind"] == "error" and "pip install prodigyopt" in end["message"]


def test_nan_loss_stops_within_one_step_and_keeps_the_last_good_save(tmp_path: Path, tiny_model_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.train.loop import setup as setup_mod

    real = setup_mod.Setup.loss
    calls = {"n": 0}

    def poisoned(self, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = real(self, batch)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(setup_mod.Setup, "loss", poisoned)
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 10, "save_every_n_steps": 2})
    assert run_training(train_argv(root), tmp_path / "run") == 1
    evs = events(tmp_path / "run")
    error = next(e for e in evs if e["kind"] == "error")
    assert error["code"] == "nan" and error["step"] == 4 and "step 4" in error["message"]
    assert error["last_good_save"].endswith("tiny-step00000002.safetensors")
    assert max(e["step"] for e in evs if e["kind"] == "step") == 3
    assert status(tmp_path / "run")["state"] == "failed"
    assert not (root / "output" / "tiny.safetensors").exists()


def test_network_weights_continue_from_a_lora(tmp_path: Path, tiny_model_dir: Path) -> None:
    first = tiny_project(tmp_path / "a", tiny_model_dir)
    assert run_training(train_argv(first), tmp_path / "run-a") == 0
    trained = first / "output" / "tiny.safetensors"
    second = tiny_project(tmp_path / "b", tiny_model_dir,
                          training={"network_weights": str(trained), "learning_rate": 0.0, "unet_lr": 0.0,
                                    "max_train_steps": 1})
    assert run_training(train_argv(second), tmp_path / "run-b-zero") == 1
    assert "nothing to train" in next(e for e in events(tmp_path / "run-b-zero") if e["kind"] == "error")["message"]
    third = tiny_project(tmp_path / "c", tiny_model_dir, training={"network_weights": str(trained),
                                                                 "dim_from_weights": True, "max_train_steps": 1,
                                                                 "learning_rate": 1e-9})
    assert run_training(train_argv(third), tmp_path / "run-c") == 0
    a, _ = load_lora(trained)
    c, _ = load_lora(third / "output" / "tiny.safetensors")
    assert a.keys() == c.keys()
    assert all(torch.allclose(a[k].float(), c[k].float(), atol=1e-4) for k in a)  # continued, barely moved


def test_unsupported_option_is_an_error_naming_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"multires_noise_iterations": 6})
    with pytest.raises(TrainError, match="multires_noise_iterations"):
        parse_args(train_argv(root))
    with pytest.raises(TrainError, match="unknown option '--no_such_flag'"):
        parse_args(train_argv(root, "--no_such_flag"))


def test_a_missing_model_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tmp_path / "nowhere" / "model.safetensors")
    assert run_training(train_argv(root), tmp_path / "run") == 1
    error = next(e for e in events(tmp_path / "run") if e["kind"] == "error")
    assert "nowhere" in error["message"] and "\n" not in error["message"]


def test_an_empty_dataset_is_an_error_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    argv = train_argv(root)
    for image in (root / "data" / "a").glob("*.png"):
        image.unlink()
    assert run_training(argv, tmp_path / "run") == 1
    error = next(e for e in events(tmp_path / "run") if e["kind"] == "error")
    assert "no images to train on" in error["message"] and ".toml" in error["message"]


def test_logging_dir_writes_tensorboard_scalars(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"logging_dir": "logs", "log_prefix": "t-"})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    (folder,) = (root / "logs").glob("t-*/network_train")
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert {"loss/current", "loss/average", "lr/unet", "lr/textencoder"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss/current")] == [1, 2, 3, 4, 5, 6]


def test_cuda_out_of_memory_ends_with_code_oom_and_the_knobs(tmp_path: Path, tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_tui.train.loop import setup as setup_mod

    def oom(self, batch):  # type: ignore[no-untyped-def]
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(setup_mod.Setup, "loss", oom)
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    assert run_training(train_argv(root), tmp_path / "run") == 1
    error = next(e for e in events(tmp_path / "run") if e["kind"] == "error")
    assert error["code"] == "oom"
    for knob in ("train_batch_size", "gradient_checkpointing", "cache_latents", "resolution"):
        assert knob in error["message"]
    assert status(tmp_path / "run")["state"] == "failed"


def test_sample_images_during_training_with_a_sample_event(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir,
                        training={"max_train_steps": 4, "sample_every_n_steps": 2, "sample_prompts": "prompts.txt"})
    (root / "prompts.txt").write_text("sks, red --w 64 --h 64 --s 2 --d 5\n", "utf-8")
    assert run_training(train_argv(root), tmp_path / "run") == 0
    samples = [e for e in events(tmp_path / "run") if e["kind"] == "sample"]
    assert [e["step"] for e in samples] == [2, 4]
    assert all(Path(p).exists() and Path(p).parent == tmp_path / "run" / "samples" for e in samples
               for p in e["paths"])
    assert samples[0]["prompts"] == ["sks, red"]


@pytest.mark.parametrize("training", [
    {"gradient_checkpointing": True},
    {"clip_skip": 2, "max_token_length": 150},
    {"cache_latents_to_disk": True},
    {"cache_latents": False, "network_train_unet_only": True},
    {"network_train_text_encoder_only": True},
    {"network_args": ["conv_dim=4", "conv_alpha=2"]},
    {"noise_offset": 0.1, "min_snr_gamma": 5.0, "gradient_accumulation_steps": 2},
    {"torch_compile": True, "dynamo_backend": "eager"},
    {"mixed_precision": "bf16", "save_precision": "fp16"},
], ids=lambda t: ",".join(t))
def test_training_options_run_to_a_loadable_lora(training: dict, tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir, training={"max_train_steps": 2, **training})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    weights, meta = load_lora(root / "output" / "tiny.safetensors")
    assert weights and meta["ss_steps"] == "2"
    if training.get("network_train_text_encoder_only"):
        assert not any(k.startswith("lora_unet_") for k in weights)
    if training.get("network_train_unet_only"):
        assert not any(k.startswith("lora_te_") for k in weights)
    if "network_args" in training:
        assert any("resnets" in k for k in weights) and '"conv_dim": "4"' in meta["ss_network_args"]
    if training.get("save_precision") == "fp16":
        assert {v.dtype for v in weights.values()} == {torch.float16}
    if training.get("cache_latents_to_disk"):
        assert list((root / "data" / "a").glob("*_sd.npz"))


def test_sd2_v_prediction_from_a_single_file(tmp_path: Path) -> None:
    from lora_tui.train.model.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "sd2", v2=True, single_file=True, v_parameterization=True)
    root = tiny_project(tmp_path / "p", model, training={"max_train_steps": 2, "v2": True,
                                                        "v_parameterization": True})
    assert run_training(train_argv(root), tmp_path / "run") == 0
    _, meta = load_lora(root / "output" / "tiny.safetensors")
    assert meta["ss_v2"] == "True" and meta["ss_base_model_version"] == "sd_v2_v"
    assert meta["modelspec.prediction_type"] == "v"


def test_a_broken_prompt_file_warns_once_and_training_goes_on(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tiny_project(tmp_path / "p", tiny_model_dir,
                        training={"max_train_steps": 4, "sample_every_n_steps": 1, "sample_prompts": "prompts.json"})
    (root / "prompts.json").write_text("{not json", "utf-8")
    assert run_training(train_argv(root), tmp_path / "run") == 0
    warns = [e for e in events(tmp_path / "run") if e["kind"] == "warn" and e.get("code") == "sample"]
    assert len(warns) == 1 and "prompts.json" in warns[0]["message"]
    assert status(tmp_path / "run")["state"] == "finished"


def test_ctrl_c_while_latents_are_cached_stops_without_waiting_for_the_rest(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from lora_tui.train.data.batches import TrainData

    real = TrainData.cache_latents
    seen: list[int] = []

    def interrupted(self, encode, **kwargs):  # type: ignore[no-untyped-def]
        progress = kwargs["progress"]

        def counting(done: int, total: int) -> None:
            seen.append(done)
            if done == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what a Ctrl-C in the terminal does
            progress(done, total)

        return real(self, encode, **{**kwargs, "progress": counting})

    monkeypatch.setattr(TrainData, "cache_latents", interrupted)
    root = tiny_project(tmp_path / "p", tiny_model_dir)
    assert run_training(train_argv(root), tmp_path / "run") == 130
    assert max(seen) < 6  # the remaining images were never encoded
    final = status(tmp_path / "run")
    assert final["state"] == "stopped" and "before the first step" in final["reason"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # pytest's Ctrl-C works again

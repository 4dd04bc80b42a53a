"""core.vram: the peak-VRAM estimate and the knob doctor names when it does not fit (no torch, no GPU)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from lora_tui.core import vram
from lora_tui.core.findings import OK, WARNING
from lora_tui.core.gpu import GpuMemory
from lora_tui.core.vram_check import check_vram

GIB = vram.GIB
SDXL = vram.Plan("sdxl", batch=4, width=1024, height=1024, mixed_precision="bf16", no_half_vae=True, dim=32,
                 train_text_encoder=False, cache_text_encoder_outputs=True, cache_latents=True,
                 gradient_checkpointing=True)
SD15 = vram.Plan("sd_v1", batch=2, width=512, height=512, mixed_precision="fp16", dim=16)


def total(plan: vram.Plan) -> int:
    return vram.estimate(plan).total


@pytest.mark.parametrize("plan", [SDXL, SD15, replace(SDXL, gradient_checkpointing=False)])
def test_estimate_grows_with_batch_and_resolution(plan: vram.Plan) -> None:
    assert total(replace(plan, batch=plan.batch + 1)) > total(plan)
    assert total(replace(plan, width=plan.width + 64)) > total(plan)
    assert total(replace(plan, height=plan.height + 128, batch=plan.batch * 2)) > total(plan)


@pytest.mark.parametrize("change", [
    {"gradient_checkpointing": True}, {"cache_latents": True}, {"optimizer": "AdamW8bit"},
    {"mixed_precision": "bf16"}, {"dim": 4}, {"train_text_encoder": False}, {"conv_dim": None},
])
def test_each_knob_lowers_the_estimate(change: dict[str, object]) -> None:
    plan = vram.Plan("sdxl", batch=2, width=1024, height=1024, mixed_precision="no", dim=32, conv_dim=16,
                     optimizer="AdamW")
    assert total(replace(plan, **change)) < total(plan)


def test_cached_text_encoder_outputs_take_the_encoders_off_the_card() -> None:
    trained = replace(SDXL, cache_text_encoder_outputs=False)
    assert vram.estimate(trained).weights - vram.estimate(SDXL).weights == vram.FAMILIES["sdxl"].text_encoder_params * 2


def test_checkpointing_cuts_sdxl_activations_by_most() -> None:
    plain = vram.estimate(replace(SDXL, gradient_checkpointing=False)).activations
    assert vram.estimate(SDXL).activations < plain / 5


def test_fp32_doubles_weights_and_keeps_more_activations() -> None:
    half, full = vram.estimate(SD15), vram.estimate(replace(SD15, mixed_precision="no"))
    assert full.weights > 1.9 * half.weights
    assert 1.2 * half.activations < full.activations < 2 * half.activations  # autocast keeps some fp32 anyway


def test_optimizer_state_bytes_by_name() -> None:
    assert vram.optimizer_state_bytes("AdamW") == (8, True)
    assert vram.optimizer_state_bytes("adamw8bit") == (2, True)
    assert vram.optimizer_state_bytes("Prodigy") == (16, True)
    assert vram.optimizer_state_bytes("bitsandbytes.optim.AdEMAMix8bit") == (2, False)
    assert vram.optimizer_state_bytes("torch.optim.Whatever") == (8, False)
    adam, prodigy = (vram.estimate(replace(SD15, optimizer=o)).optimizer for o in ("AdamW", "Prodigy"))
    params = vram.lora_params(SD15)
    assert (adam, prodigy) == (params * 12, params * 20)  # fp32 gradients + 8 / 16 state bytes


def test_lora_params_follow_the_per_rank_table() -> None:
    table = vram.LORA_PARAMS_PER_RANK["sdxl"]
    plan = replace(SDXL, dim=8, conv_dim=4, train_text_encoder=True)
    assert vram.lora_params(plan) == (table["text_encoder"][0] * 8 + table["unet"][0] * 8
                                      + table["unet_resnet"][0] * 8 + table["unet_conv3x3"][0] * 4)


def test_the_issue_plan_fits_16_gib() -> None:
    """SDXL 1024 px, batch 4, bf16, checkpointing, cached TE outputs, AdamW: the issue's ≤ 16 GB budget."""
    assert total(replace(SDXL, optimizer="AdamW")) < 16 * GIB


def test_no_advice_when_it_fits() -> None:
    assert vram.advice(SD15, 24 * GIB) is None


def test_advice_names_gradient_checkpointing_first() -> None:
    plan = replace(SDXL, gradient_checkpointing=False, batch=1)
    free = total(replace(plan, gradient_checkpointing=True)) + GIB
    settings, after = vram.advice(plan, free)
    assert settings == ["gradient_checkpointing = true"] and after.total <= free


def test_advice_names_cached_text_encoder_outputs_when_checkpointing_is_on() -> None:
    plan = replace(SDXL, cache_text_encoder_outputs=False, train_text_encoder=True, batch=1)
    free = total(replace(plan, cache_text_encoder_outputs=True, train_text_encoder=False)) + GIB // 4
    settings, _ = vram.advice(plan, free)
    assert len(settings) == 1 and settings[0].startswith("cache_text_encoder_outputs = true with "
                                                         "network_train_unet_only")


def test_advice_names_cache_latents_before_the_8bit_optimizer() -> None:
    plan = replace(SDXL, cache_latents=False, no_half_vae=True, batch=1)
    free = total(replace(plan, cache_latents=True)) + GIB // 100
    assert vram.advice(plan, free)[0][0].startswith("cache_latents = true")


def test_advice_lowers_the_batch_to_the_largest_that_fits() -> None:
    plan = replace(SDXL, batch=8, optimizer="AdamW8bit")
    free = total(replace(plan, batch=5)) + 1
    assert vram.advice(plan, free)[0] == ["train_batch_size = 5"]


def test_advice_combines_knobs_when_none_is_enough_alone() -> None:
    plan = replace(SDXL, gradient_checkpointing=False, cache_latents=False, batch=4)
    free = total(replace(plan, gradient_checkpointing=True, cache_latents=True, batch=4)) + 1
    settings, after = vram.advice(plan, free)
    assert settings[0] == "gradient_checkpointing = true" and settings[-1].startswith("cache_latents")
    assert after.total <= free


def test_advice_says_what_is_left_when_nothing_fits() -> None:
    settings, after = vram.advice(SDXL, 2 * GIB)  # the frozen SDXL U-Net alone is 4.8 GiB in bf16
    assert after.total > 2 * GIB and any(s.startswith("resolution = 256") for s in settings)


def test_plan_reads_sd_scripts_options() -> None:
    training = {"mixed_precision": "bf16", "gradient_checkpointing": True, "network_dim": 32,
                "network_args": ["conv_dim=8", "conv_alpha=1"], "cache_text_encoder_outputs": True,
                "network_train_unet_only": True, "cache_latents_to_disk": True, "optimizer_type": "Prodigy"}
    plan = vram.plan_from_settings("sdxl", training, batch=2, width=1024, height=768)
    assert plan == vram.Plan("sdxl", batch=2, width=1024, height=768, mixed_precision="bf16", no_half_vae=True,
                             dim=32, conv_dim=8, train_text_encoder=False, cache_text_encoder_outputs=True,
                             cache_latents=True, gradient_checkpointing=True, optimizer="Prodigy")
    defaults = vram.plan_from_settings("sd_v1", {}, batch=1, width=512, height=512)
    assert (defaults.mixed_precision, defaults.dim, defaults.optimizer, defaults.train_text_encoder) == (
        "no", 4, "AdamW", True)


def _project(**training: object) -> SimpleNamespace:
    return SimpleNamespace(training={"mixed_precision": "bf16", "network_dim": 16, **training}, launch={},
                           model_path=None)


def _report(buckets: dict[tuple[int, int], int], batch: int = 1) -> SimpleNamespace:
    return SimpleNamespace(datasets=[SimpleNamespace(buckets=buckets, batch_size=batch, resolution=(1024, 1024))])


def test_finding_compares_with_an_assumed_24gb_card_without_a_gpu() -> None:
    [finding] = check_vram(_project(gradient_checkpointing=True), "sdxl", _report({(1216, 832): 3, (1024, 1024): 1}),
                           probe=lambda: None)
    assert finding.severity == OK and finding.code == "vram"
    assert finding.message.startswith("estimated peak VRAM ") and "(weights " in finding.message
    assert "largest bucket 1024×1024" in finding.message and "assumed 24 GB card" in finding.message


def test_finding_names_the_knob_against_the_gpus_free_memory() -> None:
    plan = vram.plan_from_settings("sdxl", _project().training, batch=2, width=1024, height=1024)
    need = total(plan)
    gpus = [GpuMemory(0, "NVIDIA GeForce RTX 4090", need - GIB, 24 * GIB)]
    [finding] = check_vram(_project(), "sdxl", _report({(1024, 1024): 4}, batch=2), probe=lambda: gpus)
    assert finding.severity == WARNING and "free on GPU 0 (NVIDIA GeForce RTX 4090)" in finding.message
    assert finding.fix.startswith("set gradient_checkpointing = true → ")


def test_finding_uses_the_gpu_the_launch_names() -> None:
    gpus = [GpuMemory(0, "big", 80 * GIB, 80 * GIB), GpuMemory(1, "small", 2 * GIB, 8 * GIB)]
    project = _project()
    project.launch = {"gpu_ids": "1"}
    [finding] = check_vram(project, "sd_v1", _report({(512, 512): 1}), probe=lambda: gpus)
    assert finding.severity == WARNING and "on GPU 1 (small)" in finding.message


def test_launch_mixed_precision_wins_over_training() -> None:
    project = _project(mixed_precision="no")
    fp32 = check_vram(project, "sd_v1", _report({(512, 512): 1}), probe=lambda: None)[0].message
    project.launch = {"mixed_precision": "bf16"}
    bf16 = check_vram(project, "sd_v1", _report({(512, 512): 1}), probe=lambda: None)[0].message
    assert ", fp32" in fp32 and ", bf16" in bf16


def test_a_plan_that_only_just_fits_is_a_warning() -> None:
    plan = vram.plan_from_settings("sdxl", _project().training, batch=1, width=1024, height=1024)
    need = total(plan)
    gpus = [GpuMemory(0, "card", int(need / 0.95), 24 * GIB)]
    [finding] = check_vram(_project(), "sdxl", _report({(1024, 1024): 1}), probe=lambda: gpus)
    assert finding.severity == WARNING and "to spare" in finding.message
    assert finding.fix.startswith("set gradient_checkpointing = true")


def test_gpu_memory_reads_free_and_total_from_nvml_and_none_without_a_driver() -> None:
    from lora_tui.core.gpu import gpu_memory

    class Nvml:
        def nvmlInit(self) -> None:
            pass

        def nvmlShutdown(self) -> None:
            pass

        def nvmlDeviceGetCount(self) -> int:
            return 2

        def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
            return index

        def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
            return SimpleNamespace(free=(handle + 1) * GIB, total=24 * GIB, used=0)

        def nvmlDeviceGetName(self, handle: int) -> bytes:
            return f"GPU{handle}".encode()

    class NoDriver(Nvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    assert gpu_memory(Nvml()) == [GpuMemory(0, "GPU0", GIB, 24 * GIB), GpuMemory(1, "GPU1", 2 * GIB, 24 * GIB)]
    assert gpu_memory(NoDriver()) is None


def _counting_estimate(monkeypatch: pytest.MonkeyPatch, limit: int) -> list[int]:
    """vram.estimate, counted; past `limit` calls it fails the test instead of spinning on."""
    real, calls = vram.estimate, [0]

    def counted(plan: vram.Plan) -> vram.Estimate:
        calls[0] += 1
        if calls[0] > limit:
            raise AssertionError(f"advice estimated more than {limit} plans")
        return real(plan)

    monkeypatch.setattr(vram, "estimate", counted)
    return calls


@pytest.mark.parametrize("change", [{"batch": 10**9}, {"width": 10**9, "height": 10**9}, {"batch": 10**30}])
def test_advice_for_an_absurd_batch_or_resolution_probes_few_plans(change: dict[str, int],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch or resolution typed by mistake (99999, or a run of nines) is answered at once: the
    largest batch and resolution that fit are searched by halving, not one step at a time."""
    plan = replace(SD15, **change)
    _counting_estimate(monkeypatch, 2000)
    settings, _ = vram.advice(plan, 24 * GIB)
    assert settings and any(s.startswith(("train_batch_size", "resolution")) for s in settings)


def test_advice_still_picks_the_largest_resolution_that_fits() -> None:
    plan = replace(SD15, batch=1, width=4096, height=4096, gradient_checkpointing=True, cache_latents=True,
                   optimizer="AdamW8bit")
    free = total(replace(plan, width=2048, height=2048)) + 1
    settings, after = vram.advice(plan, free)
    assert settings == ["resolution = 2048 (largest bucket 2048×2048)"] and after.total <= free

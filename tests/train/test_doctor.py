"""`lora-tui doctor`: machine and project checks, offline and fast, on tiny models and faked GPUs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lora_tui.cli import main
from lora_tui.core import project as project_mod
from lora_tui.core import vram_check
from lora_tui.core.gpu import GpuMemory
from lora_tui.train.diagnostics import doctor
from lora_tui.train.diagnostics import project as dp
from lora_tui.train.diagnostics.doctor import ERROR, OK, WARN, Finding, NvmlInfo
from lora_tui.train.model.tiny import make_tiny_model
from tests.helpers import write_images, write_project

SD15_DIM32_FP16_BYTES = 37_861_328  # a dim-32 SD1.5 LoRA written by LoRANetwork.save_weights (fp16)
REAL_PROBE_NVML = doctor.probe_nvml  # the fixture below replaces it with "no driver"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any connection attempt fails the test; the HF cache is an empty folder (no user cache leaks in)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network used: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(doctor, "probe_nvml", lambda: None)
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: None)


def make_project(root: Path, model_path: Path | str, **extra: Any) -> project_mod.Project:
    """A one-subset project (4 tiny images) training on `model_path`; `extra` goes to [training]/[model]/…."""
    write_images(root / "data" / "a", [(64, 64)] * 4)
    training = {"network_module": "networks.lora", "network_dim": 32, "max_train_epochs": 10,
                "save_every_n_epochs": 2, "save_precision": "fp16", **extra.pop("training", {})}
    write_project(root, [{"resolution": 64, "batch_size": 1, "subsets": [{"image_dir": "data/a", "num_repeats": 2}]}],
                  model={"pretrained_model_name_or_path": str(model_path), **extra.pop("model", {})},
                  training=training, launch=extra.pop("launch", None))
    if extra.get("project"):
        text = (root / "lora-tui.toml").read_text()
        body = "".join(f'{k} = "{v}"\n' for k, v in extra["project"].items())
        (root / "lora-tui.toml").write_text(text.replace("[project]\n", "[project]\n" + body, 1))
    return project_mod.load(root)


def by_name(findings: list[Finding], name: str) -> list[Finding]:
    return [f for f in findings if f.name == name]


# ------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_single_file"])
def test_tiny_model_passes_the_model_checks(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model = request.getfixturevalue(fixture)
    findings, family = dp.check_model(make_project(tmp_path / "p", model))
    assert family == "sd_v1" and [f.severity for f in findings] == [OK]
    assert "SD1.x" in findings[0].message
    tok = dp.check_tokenizer(project_mod.load(tmp_path / "p"), family, {})
    assert [f.severity for f in tok] == [OK] and "tokens" in tok[0].message


def test_missing_model_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "gone.safetensors"
    findings = dp.check_project(make_project(tmp_path / "p", missing), {})
    model = by_name(findings, "model")
    assert [f.severity for f in model] == [ERROR] and str(missing) in model[0].message
    assert not by_name(findings, "tokenizer")  # nothing to look beside


def test_truncated_safetensors_is_an_error(tmp_path: Path) -> None:
    findings, _ = dp.check_model(make_project(tmp_path / "p", "model.safetensors"))  # helper writes b"x"
    assert findings[0].severity == ERROR and "header" in findings[0].message and findings[0].fix


def test_missing_tokenizer_is_an_error_with_the_fix(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "m" / "base.safetensors", single_file=True)
    shutil.rmtree(model.with_name("base.tokenizer"))
    findings = dp.check_project(make_project(tmp_path / "p", model), {})
    assert [f.severity for f in by_name(findings, "model")] == [OK]
    tok = by_name(findings, "tokenizer")
    assert [f.severity for f in tok] == [ERROR] and "no tokenizer" in tok[0].message
    assert tok[0].fix and "vocab.json" in tok[0].fix


def test_ckpt_is_a_warning_but_still_checked(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "m" / "base.ckpt", single_file=True)
    findings, family = dp.check_model(make_project(tmp_path / "p", model))
    assert [f.severity for f in findings] == [WARN, OK] and family == "sd_v1"
    assert "pickle" in findings[0].message and ".safetensors" in (findings[0].fix or "")


def test_v2_flag_on_an_sd1_model_is_an_error(tmp_path: Path, tiny_single_file: Path) -> None:
    findings, _ = dp.check_model(make_project(tmp_path / "p", tiny_single_file, model={"v2": True}))
    assert findings[-1].severity == ERROR and "v2" in findings[-1].message


def test_diffusers_folder_without_weights_is_an_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for weights in (copy / "vae").glob("*.safetensors"):
        weights.unlink()
    findings, _ = dp.check_model(make_project(tmp_path / "p", copy))
    assert findings[0].severity == ERROR and "vae" in findings[0].message


# ------------------------------------------------------------------------------------------- sd-scripts
def test_sd_scripts_checkout_without_train_network_is_an_error(tmp_path: Path, tiny_single_file: Path) -> None:
    checkout = tmp_path / "sd-scripts"
    (checkout / "library").mkdir(parents=True)
    (checkout / "library" / "config_util.py").write_text("")
    proj = make_project(tmp_path / "p", tiny_single_file,
                        project={"backend": "sd-scripts", "sd_scripts_dir": str(checkout)})
    found = dp.check_sd_scripts(proj)
    assert [f.severity for f in found] == [ERROR] and "train_network.py" in found[0].message
    (checkout / "train_network.py").write_text("")
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "python").write_text("")
    assert [f.severity for f in dp.check_sd_scripts(proj)] == [OK, OK]


def test_sd_scripts_tokenizer_must_be_cached_when_offline(tmp_path: Path, tiny_single_file: Path) -> None:
    proj = make_project(tmp_path / "p", tiny_single_file, project={"backend": "sd-scripts"})
    assert dp.check_tokenizer(proj, "sd_v1", {"HF_HUB_OFFLINE": "1"})[0].severity == ERROR
    assert dp.check_tokenizer(proj, "sd_v1", {})[0].severity == WARN


# ------------------------------------------------------------------------------------------- disk
def test_lora_size_estimate_matches_a_real_sd15_file() -> None:
    estimate = dp.estimate_lora_bytes("sd_v1", 32, None, 2)
    assert abs(estimate - SD15_DIM32_FP16_BYTES) / SD15_DIM32_FP16_BYTES < 0.02
    assert 36e6 < estimate < 39e6  # "a dim-32 SD1.5 LoRA in fp16 is ~37 MB"


@pytest.mark.parametrize("v2", [False, True])
def test_per_rank_table_matches_the_shipped_configs(v2: bool) -> None:
    """Recount LORA_PARAMS_PER_RANK from model_configs/ with meta-device models (no memory, ~0.3 s)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from torch import nn
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_tui.train.model.load import shipped_configs
    from lora_tui.train.network.lora import LoRANetwork

    configs = shipped_configs(v2)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs["unet"])
        te = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        plain = LoRANetwork(te, unet, dim=1, alpha=1)
        locon = LoRANetwork(te, unet, dim=1, alpha=1, conv_dim=1)

    def tally(loras: list[Any]) -> tuple[int, int]:
        return sum(m.lora_down.weight.numel() + m.lora_up.weight.numel() for m in loras), len(loras)

    def is_3x3(m: Any) -> bool:
        return isinstance(m.org_module, nn.Conv2d) and tuple(m.org_module.kernel_size) != (1, 1)

    table = dp.LORA_PARAMS_PER_RANK["sd_v2" if v2 else "sd_v1"]
    assert tally(plain.text_encoder_loras) == table["text_encoder"]
    assert tally(plain.unet_loras) == table["unet"]
    conv = tally([m for m in locon.unet_loras if is_3x3(m)])
    resnet = tally([m for m in locon.unet_loras if not is_3x3(m)])
    assert conv == table["unet_conv3x3"]
    assert (resnet[0] - table["unet"][0], resnet[1] - table["unet"][1]) == table["unet_resnet"]


def test_planned_saves_follow_sd_scripts() -> None:
    assert dp.planned_saves({}, 10, 1000) == (1, 0)
    assert dp.planned_saves({"save_every_n_epochs": 2}, 10, 1000) == (5, 0)  # epochs 2, 4, 6, 8 + final
    assert dp.planned_saves({"save_every_n_epochs": 2, "save_last_n_epochs": 2, "save_state": True}, 10, 1000) == (3, 3)
    assert dp.planned_saves({"save_every_n_steps": 300, "save_state_on_train_end": True}, 1, 1000) == (4, 1)


def test_disk_error_when_the_saves_do_not_fit(tmp_path: Path, tiny_single_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    proj = make_project(tmp_path / "p", tiny_single_file, training={"save_state": True})
    ok = dp.check_disk(proj, "sd_v1")
    assert ok[0].severity in (OK, WARN) and "5 LoRA file(s) × 37.9 MB + 5 state(s)" in ok[0].message
    monkeypatch.setattr(dp.shutil, "disk_usage", lambda p: SimpleNamespace(free=100 * 1000**2, total=1, used=0))
    full = dp.check_disk(proj, "sd_v1")
    assert full[0].severity == ERROR and full[0].fix


# ------------------------------------------------------------------------------------------- machine
def test_cpu_torch_on_a_gpu_machine_is_an_error_with_the_index_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "probe_nvml", lambda: NvmlInfo(["NVIDIA H100 80GB HBM3"], "550.54", (12, 4)))
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    found = doctor.check_torch()
    assert [f.severity for f in found] == [ERROR] and "CPU-only" in found[0].message
    assert found[0].fix and "https://download.pytorch.org/whl/cu124" in found[0].fix


def test_nvml_probe_never_raises() -> None:
    """No driver (CI) → None; a driver → the GPUs it sees. Either way the doctor goes on."""
    info = REAL_PROBE_NVML()
    assert info is None or (isinstance(info, NvmlInfo) and isinstance(info.names, list))
    assert doctor.cuda_wheel_url((12, 5)).endswith("/cu124") and doctor.cuda_wheel_url(None).endswith("/cu130")


def test_no_gpu_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    found = doctor.check_torch()
    assert found[0].severity == OK and found[0].name == "torch"
    assert any(f.severity == WARN and "CPU (slow)" in f.message for f in found)


def test_gpu_lines_and_bf16_on_an_old_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          tiny_single_file: Path) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    t4 = SimpleNamespace(name="Tesla T4", major=7, minor=5)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: t4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (14 * 1024**3, 15 * 1024**3))
    assert doctor.check_torch()[1] == Finding.about("gpu0", OK,
                                                    "Tesla T4, sm_75, 15.0 GiB total / 14.0 GiB free, bf16 no")
    proj = make_project(tmp_path / "p", tiny_single_file, training={"mixed_precision": "bf16"})
    gpu = doctor.check_torch(proj)[1]
    assert gpu.severity == ERROR and "fp16" in (gpu.fix or "")


def test_accelerate_config_against_the_project(tmp_path: Path, tiny_single_file: Path) -> None:
    proj = make_project(tmp_path / "p", tiny_single_file)
    missing = doctor.check_accelerate(proj, tmp_path / "none.yaml")
    assert [f.severity for f in missing] == [OK] and "accelerate config" in (missing[0].fix or "")
    config = tmp_path / "default_config.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\nnum_processes: 4\nmixed_precision: fp16\nuse_cpu: true\n")
    found = doctor.check_accelerate(proj, config)
    assert found[0].severity == OK and "num_processes 4" in found[0].message
    warns = [f.message for f in found if f.severity == WARN]
    assert any("use_cpu" in m for m in warns) and any("4 processes" in m for m in warns)


@pytest.mark.parametrize(("env", "severity"), [({"HF_HUB_OFFLINE": "1"}, OK), ({}, OK),
                                               ({"HF_HUB_OFFLINE": "0"}, WARN)])
def test_offline_state(env: dict[str, str], severity: str) -> None:
    assert doctor.check_offline(env)[0].severity == severity


# ------------------------------------------------------------------------------------------- CLI
def test_cli_prints_one_line_per_check_and_exits_1_on_error(tmp_path: Path, tiny_single_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path / "good", tiny_single_file)
    start = time.perf_counter()
    assert main(["doctor", str(tmp_path / "good")]) == 0
    elapsed = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    findings = doctor.run_checks(project_mod.load(tmp_path / "good"), env=dict(os.environ))
    assert len(lines) == len(findings) and all(line.split()[0] in (OK, WARN, ERROR) for line in lines)
    assert any(line.startswith("ok   torch ") for line in lines)
    assert elapsed < 10, f"doctor took {elapsed:.1f}s"

    make_project(tmp_path / "bad", tmp_path / "nope.safetensors")
    assert main(["doctor", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("error model not found") and "nope.safetensors" in line for line in out.splitlines())


def test_cli_prints_the_vram_estimate_for_a_tiny_sdxl_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from lora_tui.train.model.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "m", single_file=True)
    make_project(tmp_path / "p", model, training={"mixed_precision": "bf16", "gradient_checkpointing": True})
    main(["doctor", str(tmp_path / "p")])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["vram"]]
    assert line.startswith("ok   vram estimated peak VRAM ") and "(weights " in line and ", activations " in line
    assert "of a full-size SDXL model" in line and "a test model" in line  # the tiny U-Net is not what is estimated
    assert "batch 1, bf16, gradient checkpointing" in line and "fits an assumed 24 GB card (no GPU here)" in line

    small = [GpuMemory(0, "NVIDIA T4", 4 * 1024**3, 16 * 1024**3)]
    monkeypatch.setattr(vram_check, "gpu_memory", lambda: small)
    main(["doctor", str(tmp_path / "p")])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["vram"]]
    assert "more than 4.0 GiB free on GPU 0 (NVIDIA T4)" in line and "→ set cache_text_encoder_outputs = true" in line


def test_cli_json_and_machine_only(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == data["exit_code"] == 0
    assert {f["name"] for f in data["findings"]} <= {"torch", "gpu", "cuda", "mixed_precision", "accelerate",
                                                     "launch", "offline"} | {f"gpu{i}" for i in range(16)}
    assert set(data["findings"][0]) == {"name", "severity", "message", "fix"}


def test_cli_bad_project_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lora-tui: error: ")

"""`lora-tui doctor`: a pre-flight check of the machine (and a project) that runs in seconds.

Training on a headless server fails late and expensively: a CPU-only torch wheel on a GPU box, an
accelerate config that launches eight processes, a missing tokenizer that sd-scripts would fetch from
the hub, a disk that fills at the third checkpoint. Each probe here turns one of those into a finding
(ok / warn / error, with the fix) before anything runs. Nothing loads full weights and nothing touches
the network: GPUs are read through torch and NVML, models through file headers
(`doctor_project`).

This module imports torch, so it lives in `train/`; the CLI imports it lazily inside `cmd_doctor`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lora_tui.core.findings import ERROR, OK, WARNING, Finding
from lora_tui.core.gpu import NvmlInfo, probe_nvml
from lora_tui.core.offline import is_offline
from lora_tui.core.project import Project
from lora_tui.core.train_settings import effective
from lora_tui.train.diagnostics import project as doctor_project

WARN = WARNING  # the doctor's older name
__all__ = ["ERROR", "OK", "WARN", "Finding", "NvmlInfo", "is_offline", "probe_nvml"]

PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# CUDA builds of torch on the PyTorch index, newest first; the driver must support the wheel's CUDA.
CUDA_WHEEL_TAGS = ((13, 0), (12, 9), (12, 8), (12, 6), (12, 4), (12, 1), (11, 8))
LOW_FREE_GPU_BYTES = 4 * 1024**3  # below this, even SD1.5 LoRA at batch 1 is at risk


def gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def run_checks(project: Project | None = None, *, env: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, machine first; `env` is the environment as the user set it.

    Importing `lora_tui.train` sets HF_HUB_OFFLINE=1 for the trainer, so the caller snapshots the
    environment before that import to report what the user (and sd-scripts) will really see.
    """
    env = dict(os.environ if env is None else env)
    findings = check_torch(project)
    findings += check_accelerate(project)
    findings += check_offline(env, project)
    if project is not None:
        findings += doctor_project.check_project(project, env)
    return findings


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing is an error, 1 otherwise (2 stays the CLI's 'could not even run' code)."""
    return 1 if any(f.severity == ERROR for f in findings) else 0


# ------------------------------------------------------------------------------------------- torch + GPUs
def cuda_wheel_url(driver_cuda: tuple[int, int] | None) -> str:
    """The PyTorch index for the newest CUDA wheel this driver can run."""
    for tag in CUDA_WHEEL_TAGS:
        if driver_cuda is None or tag <= driver_cuda:
            return f"{PYTORCH_INDEX}cu{tag[0]}{tag[1]}"
    return f"{PYTORCH_INDEX}cu{CUDA_WHEEL_TAGS[-1][0]}{CUDA_WHEEL_TAGS[-1][1]}"


def _mixed_precision(project: Project | None) -> str:
    if project is None:
        return "no"
    return str(project.launch.get("mixed_precision") or effective(project.training, "mixed_precision"))


def check_torch(project: Project | None = None) -> list[Finding]:
    """torch's build, CUDA, and per GPU: name, compute capability, memory, bf16.

    A CPU-only wheel on a GPU machine is the classic silent failure (training "works", 50× slower),
    so NVML is asked independently of torch what the driver sees.
    """
    import torch

    info = probe_nvml()
    version = torch.__version__
    cuda_build = torch.version.cuda or getattr(torch.version, "hip", None)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else (
        f"ROCm {cuda_build} build" if cuda_build else "CPU build")
    out = [Finding.about("torch", OK, f"{version} ({build})")]
    gpus_seen = info.names if info else []
    seen = f"{len(gpus_seen)} NVIDIA GPU(s) ({', '.join(sorted(set(gpus_seen)))})" if gpus_seen else ""
    if not cuda_build and gpus_seen:
        return [Finding.about("torch", ERROR, f"{version} is a CPU-only build but the driver sees {seen}",
                              f"pip install --force-reinstall torch --index-url {cuda_wheel_url(info and info.cuda)}")]
    if not torch.cuda.is_available():
        if gpus_seen:
            hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = f"CUDA_VISIBLE_DEVICES={hidden!r} hides them" if hidden is not None else (
                f"driver {info.driver if info else '?'} may be too old for torch's CUDA {torch.version.cuda}")
            out.append(Finding.about("cuda", ERROR, f"not available although the driver sees {seen}: {why}",
                                     "check `nvidia-smi`; install a torch wheel for the driver's CUDA: "
                                     f"pip install --force-reinstall torch --index-url "
                                     f"{cuda_wheel_url(info.cuda if info else None)}"))
        else:
            out.append(Finding.about("gpu", WARN, "no GPU: training will run on the CPU (slow)",
                                     "fine for `make-tiny-model` trials; use a machine with an NVIDIA GPU for "
                                     "real runs"))
            if _mixed_precision(project) == "fp16":
                out.append(Finding.about("mixed_precision", WARN, "fp16 needs a GPU; accelerate refuses it on the CPU",
                                         'set mixed_precision = "no" (or "bf16") for CPU runs'))
        return out
    return out + _gpu_findings(torch, project)


def _gpu_findings(torch: Any, project: Project | None) -> list[Finding]:
    out = []
    count = torch.cuda.device_count()
    want_bf16 = _mixed_precision(project) == "bf16"
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        major, minor = props.major, props.minor
        bf16 = bool(getattr(torch.version, "hip", None)) or major >= 8
        text = (f"{props.name}, sm_{major}{minor}, {gib(total)} total / {gib(free)} free, "
                f"bf16 {'yes' if bf16 else 'no'}")
        if want_bf16 and not bf16:
            out.append(Finding.about(f"gpu{index}", ERROR, f"{text}: the project trains in bf16",
                                     'set mixed_precision = "fp16" in [training] (bf16 needs compute capability 8.0+)'))
        elif free < LOW_FREE_GPU_BYTES:
            out.append(Finding.about(f"gpu{index}", WARN, f"{text}: other processes hold {gib(total - free)}",
                                     "stop them (see nvidia-smi) or pick another GPU with [launch] gpu_ids"))
        else:
            out.append(Finding.about(f"gpu{index}", OK, text))
    return out


# ------------------------------------------------------------------------------------------- accelerate
def accelerate_config_file() -> Path:
    """accelerate's own default config path (HF_HOME-aware), or the same rule when it is missing."""
    try:
        from accelerate.commands.config import default_config_file

        return Path(default_config_file)
    except Exception:
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
        return Path(os.path.expanduser(home)) / "accelerate" / "default_config.yaml"


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    return data


def check_accelerate(project: Project | None = None, config_file: Path | None = None) -> list[Finding]:
    """The default `accelerate` config against the project's [launch]/[training] values.

    The launch command passes `--num_processes` only for several GPUs and `--mixed_precision` only
    when [launch] sets it, so for a one-GPU project the config file's values are what accelerate uses.
    """
    path = config_file or accelerate_config_file()
    if not path.is_file():
        return [Finding.about("accelerate", OK, f"no default config ({path}): 1 process, fine for one GPU",
                              "run `accelerate config` to train on several GPUs")]
    try:
        config = _read_config(path)
    except Exception as exc:
        return [Finding.about("accelerate", WARN, f"cannot read {path}: {exc}".splitlines()[0],
                              "fix or delete it, then run `accelerate config`")]
    procs = int(config.get("num_processes") or 1)
    mp = str(config.get("mixed_precision") or "no")
    out = [Finding.about("accelerate", OK, f"{path}: num_processes {procs}, mixed_precision {mp}")]
    if config.get("use_cpu"):
        out.append(Finding.about("accelerate", WARN, f"{path} sets use_cpu: true, so training ignores the GPUs",
                                 "run `accelerate config` and answer no to 'run on CPU only'"))
    if project is None:
        return out
    want = int(project.launch.get("num_processes", 1))
    if want == 1 and procs > 1:
        out.append(Finding.about("accelerate", WARN, f"the config launches {procs} processes but the project's "
                                 "[launch] num_processes = 1 (the launch command does not override it)",
                                 f"set [launch] num_processes = {procs}, or run `accelerate config` for one GPU"))
    want_mp = _mixed_precision(project)
    if not project.launch.get("mixed_precision") and mp not in ("no", want_mp):
        out.append(Finding.about("accelerate", OK, f"config mixed_precision {mp} differs from the project's "
                                 f"{want_mp}; the trainer passes its own value, so {want_mp} is used"))
    return out + _launch_vs_gpus(project)


def _launch_vs_gpus(project: Project) -> list[Finding]:
    """[launch] num_processes / gpu_ids against the GPUs torch can use."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = int(project.launch.get("num_processes", 1))
    out = []
    if want > 1 and want > count:
        out.append(Finding.about("launch", ERROR, f"[launch] num_processes = {want} but {count} GPU(s) are usable",
                                 f"set [launch] num_processes = {max(count, 1)}"))
    ids = [s.strip() for s in str(project.launch.get("gpu_ids") or "").split(",") if s.strip()]
    bad = [i for i in ids if i != "all" and (not i.isdigit() or int(i) >= count)]
    if bad:
        out.append(Finding.about("launch", ERROR, f"[launch] gpu_ids names GPU(s) {', '.join(bad)} but {count} exist",
                                 f"use indices 0..{max(count - 1, 0)}" if count else "remove gpu_ids"))
    return out


# ------------------------------------------------------------------------------------------- offline
def check_offline(env: Mapping[str, str], project: Project | None = None) -> list[Finding]:
    """HF_HUB_OFFLINE as the user set it; the doctor itself never opens a connection.

    The built-in trainer is offline whatever it says (core.offline: only --allow-download lifts
    that); sd-scripts, which lora-tui launches with HF_HUB_OFFLINE=1 unless the user set it, obeys it.
    """
    value = env.get("HF_HUB_OFFLINE")
    if is_offline(env):
        return [Finding.about("offline", OK, f"HF_HUB_OFFLINE={value}: nothing downloads from the Hugging Face hub")]
    sd_scripts = project is not None and project.backend == "sd-scripts"
    if value is None:
        who = ("sd-scripts may download (tokenizer, hub model ids)" if sd_scripts
               else "the built-in trainer loads local files only")
        return [Finding.about("offline", OK, f"HF_HUB_OFFLINE unset: {who}",
                              "export HF_HUB_OFFLINE=1 to be sure nothing is fetched" if sd_scripts else None)]
    return [Finding.about("offline", WARN, f"HF_HUB_OFFLINE={value}: sd-scripts may download from the hub (the "
                          "built-in trainer stays offline unless lora-tui train --allow-download)",
                          "unset it or export HF_HUB_OFFLINE=1")]

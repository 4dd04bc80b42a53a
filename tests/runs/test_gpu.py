"""GPU sampling through NVML, with a stand-in for the driver (no GPU here or in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

from lora_tui.runs import contract
from lora_tui.runs.gpu import GpuSampler
from lora_tui.runs.supervisor import Supervisor
from tests.runs.helpers import fake_run, project

MB = 1 << 20


def fake_nvml(run_pids: list[int], *, fail_init: bool = False) -> types.SimpleNamespace:
    """Two 24 GB cards; the run's processes use 3 GB on card 0, a stranger uses 1 GB on card 1."""
    def proc(pid: int, mb: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(pid=pid, usedGpuMemory=mb * MB)

    procs = {0: [proc(p, 3000 // max(1, len(run_pids))) for p in run_pids], 1: [proc(999999, 1000)]}

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    return types.SimpleNamespace(
        nvmlInit=init, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetName=lambda h: b"NVIDIA GeForce RTX 4090",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(4000 if h == 0 else 1500) * MB,
                                                                 total=24000 * MB),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=97 if h == 0 else 3),
        nvmlDeviceGetComputeRunningProcesses=lambda h: procs[h])


def test_the_runs_own_memory_is_told_apart_from_other_processes() -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        sampler = GpuSampler(fake_nvml([worker.pid]))
        samples = sampler.sample(run_pgid=worker.pid)  # found by its process group, as data-loader workers are
        assert [(s.index, s.used_mb, s.total_mb, s.util_pct, s.proc_used_mb) for s in samples] == [
            (0, 4000, 24000, 97, 3000), (1, 1500, 24000, 3, None)]
        assert samples[0].name == "NVIDIA GeForce RTX 4090"
    finally:
        worker.kill()
        worker.wait()


def test_cuda_visible_devices_limits_the_cards_sampled() -> None:
    sampler = GpuSampler(fake_nvml([]), env={"CUDA_VISIBLE_DEVICES": "GPU-1"})
    assert [s.index for s in sampler.sample()] == [1]


def test_no_driver_is_a_note_not_an_error() -> None:
    sampler = GpuSampler(fake_nvml([], fail_init=True))
    assert not sampler.available and sampler.reason.startswith("no GPU") and sampler.sample() == []


def test_the_supervisor_writes_gpu_events_and_the_runs_peak(tmp_path: Path, monkeypatch) -> None:
    run = fake_run(project(tmp_path / "p"), "--steps", "30", "--step-seconds", "0.1")
    monkeypatch.setattr("lora_tui.runs.supervisor.GPU_EVERY_S", 0.2)
    class Sampler(GpuSampler):  # the trainer's pid is only known once the supervisor has started it
        def sample(self, run_pids=(), run_pgid=None):  # type: ignore[no-untyped-def]
            self._nvml = fake_nvml([run_pgid] if run_pgid else [])
            return super().sample(run_pids, run_pgid)

    code = Supervisor(run, gpu=Sampler(fake_nvml([])), tick=0.05).run()
    assert code == 0
    gpu = [e for e in contract.iter_all_events(run) if e["kind"] == "gpu"]
    assert gpu and {e["index"] for e in gpu} == {0, 1}
    assert any(e["proc_used_mb"] == 3000 for e in gpu if e["index"] == 0)
    status, _ = contract.read_status(run)
    assert status["peak_vram_mb"] == 3000 and status["state"] == "finished"
    assert os.getpid() != status["trainer_pid"]

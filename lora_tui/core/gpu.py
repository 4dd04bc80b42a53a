"""The NVIDIA driver's view of the GPUs, through NVML (nvidia-ml-py): one probe for everyone.

``doctor`` asks which GPUs and CUDA version the driver offers (:func:`probe_nvml`); the supervisor
samples memory and utilisation for a run's ``gpu`` events (:class:`GpuSampler`), and the monitor
reads those. The driver's view is the only one that sees every process on the card (the trainer's own
torch figures miss other processes, and sd-scripts reports none). No driver or no library: one "no
GPU" answer, never an error, never retried. Plain Python: no torch, so core, runs and ui can use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MB = 1 << 20


@dataclass
class GpuSample:
    index: int
    uuid: str
    name: str
    used_mb: float
    total_mb: float
    util_pct: int | None
    proc_used_mb: float | None  # the run's own processes; None when NVML shows none of them

    def to_event(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "name": self.name, "used_mb": round(self.used_mb, 1),
                "total_mb": round(self.total_mb, 1), "util_pct": self.util_pct,
                "proc_used_mb": None if self.proc_used_mb is None else round(self.proc_used_mb, 1)}


@dataclass(frozen=True)
class NvmlInfo:
    """What the NVIDIA driver reports, independently of how torch was built."""

    names: list[str]
    driver: str | None
    cuda: tuple[int, int] | None  # the newest CUDA the driver supports


def probe_nvml() -> NvmlInfo | None:
    """The GPUs the driver sees, via NVML; None when there is no NVIDIA driver (or no pynvml)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA driver here
        return None
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        names = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        version = int(pynvml.nvmlSystemGetCudaDriverVersion())  # 12040 → 12.4
        return NvmlInfo(names, driver, (version // 1000, version % 1000 // 10))
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


@dataclass(frozen=True)
class GpuMemory:
    """One GPU's memory as the driver sees it (every process counted), in bytes."""

    index: int
    name: str
    free: int
    total: int


def gpu_memory(nvml: Any = None) -> list[GpuMemory] | None:
    """Free and total memory of each GPU, via NVML; None when there is no NVIDIA driver (or no pynvml).

    The VRAM estimate is compared against `free`: what other processes hold is not available to a run.
    """
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception:  # ImportError, NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        return None
    try:
        out = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(GpuMemory(index, _text(nvml.nvmlDeviceGetName(handle)), int(mem.free), int(mem.total)))
        return out
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _process_group(pid: int) -> int | None:
    """The process group of ``pid`` (a data-loader worker belongs to the trainer's), None if gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible(env: dict[str, str] | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES of the trainer (indices or UUIDs), None when unrestricted."""
    raw = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


class GpuSampler:
    """Samples every visible NVIDIA GPU; ``available`` False (with ``reason``) when there is none."""

    def __init__(self, nvml: Any = None, env: dict[str, str] | None = None) -> None:
        self.available = False
        self.reason: str | None = None
        self.handles: list[tuple[int, Any]] = []
        self._nvml = nvml
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            count = int(self._nvml.nvmlDeviceGetCount())
        except ImportError:
            self.reason = "no GPU: nvidia-ml-py is not installed"
            return
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …: not an error for us
            self.reason = f"no GPU: NVIDIA driver not found ({_text(exc) or type(exc).__name__})"
            return
        visible = _visible(env)
        for index in range(count):
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            if visible is not None:
                uuid = _text(self._nvml.nvmlDeviceGetUUID(handle))
                if str(index) not in visible and uuid not in visible:
                    continue
            self.handles.append((index, handle))
        if not self.handles:
            self.reason = "no GPU: NVML lists no device visible to this run"
            return
        self.available = True

    def sample(self, run_pids: Iterable[int] = (), run_pgid: int | None = None) -> list[GpuSample]:
        """One sample per device. The run's own memory is the sum over its processes: ``run_pids``,
        or any process in the trainer's process group (data-loader workers, accelerate's children)."""
        if not self.available:
            return []
        nvml, pids = self._nvml, set(run_pids)
        out = []
        for index, handle in self.handles:
            try:
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                try:
                    util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except Exception:
                    util = None
                procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                mine = [p for p in procs if p.pid in pids or (run_pgid is not None
                                                             and _process_group(p.pid) == run_pgid)]
                used_by_run = sum(float(p.usedGpuMemory or 0) for p in mine) / MB if mine else None
                out.append(GpuSample(index, _text(nvml.nvmlDeviceGetUUID(handle)),
                                     _text(nvml.nvmlDeviceGetName(handle)), mem.used / MB, mem.total / MB, util,
                                     used_by_run))
            except Exception:  # a device that fell off the bus: skip this sample, keep the others
                continue
        return out

    def close(self) -> None:
        if self.available:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

"""GPU sampling for the supervisor: the NVML probe lives in core.gpu (doctor and the monitor use it too)."""

from lora_tui.core.gpu import MB, GpuSample, GpuSampler, NvmlInfo, probe_nvml

__all__ = ["MB", "GpuSample", "GpuSampler", "NvmlInfo", "probe_nvml"]

"""How long the GPU itself is busy per forward, and whether a row is launch-bound.

On a GPU a small forward is mostly the host launching kernels: resnet50 at batch 1 on an H100 took 4.4-8.8 ms
eager and 0.99 ms replayed from a CUDA graph. A latency that is mostly launch overhead measures the host, not
the model, so every CUDA row carries `device_ms` (the GPU's busy time per forward) and `gpu_busy` =
device_ms / latency p50:
- graphs modes: a replay is one launch, so the events around it span the GPU's own execution: device_ms is
  the replay's median;
- eager and compile: the sum of the kernel durations torch's profiler records over a few forwards, per forward.
Below LAUNCH_BOUND the GPU idles more than it works during a forward: the host decides the latency."""
from __future__ import annotations

from typing import Any, Callable

import torch

LAUNCH_BOUND = 0.5


def kernel_time_ms(forward: Callable[[], Any], device: torch.device, iters: int = 10) -> float:
    """Summed CUDA kernel time per forward, from torch.profiler (CUDA activity only)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            forward()
        torch.cuda.synchronize(device)
    total_us = sum(e.device_time for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return total_us / 1e3 / iters


def busy_columns(device_ms: float | None, latency_ms_p50: float | None) -> dict[str, Any]:
    """device_ms, gpu_busy and launch_bound for one row; empty when either figure is missing (every CPU row)."""
    if device_ms is None or not latency_ms_p50:
        return {}
    busy = device_ms / latency_ms_p50
    return {"device_ms": device_ms, "gpu_busy": busy, "launch_bound": busy < LAUNCH_BOUND}

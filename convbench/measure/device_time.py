"""How long the GPU itself is busy per forward, and whether a row is launch-bound.

On a GPU a small forward is mostly the host launching kernels: resnet50 at batch 1 on an H100 took 4.4-8.8 ms
eager and 0.99 ms replayed from a CUDA graph. A latency that is mostly launch overhead measures the host, not
the model, so every CUDA row carries `device_ms` (the GPU's busy time per forward) and `gpu_busy` =
device_ms / latency p50.

device_ms is measured the same way in every mode: torch's profiler records a few forwards (eager calls, compiled
calls or graph replays alike), and the busy time is the union of the recorded kernels' intervals, per forward.
Only kernels count: the profiler also records memcpy/memset activity and a device-side copy of every
record_function range (`gpu_user_annotation`), which is not work. Where it records no kernel at all, there is
no figure and the row says why; a zero would read as "launch-bound" and make a device ratio meaningless.
Below LAUNCH_BOUND the GPU idles more than it works during a forward: the host decides the latency."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from convbench.measure.quiet import profiler_chatter_dropped

LAUNCH_BOUND = 0.5
NOT_KERNELS = ("gpu_memcpy", "gpu_memset", "gpu_user_annotation")
NO_KERNELS_NOTE = "device time: the profiler recorded no GPU kernel, so there is no figure"


def is_kernel(event: Any) -> bool:
    """A device-side kernel among torch.profiler's events (FunctionEvent or anything with the same fields)."""
    if event.device_type == torch.autograd.DeviceType.CPU or getattr(event, "is_user_annotation", False):
        return False
    if getattr(event, "activity_type", None) in NOT_KERNELS:
        return False
    return not str(event.name).startswith(("Memcpy", "Memset"))


def busy_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: kernels that overlap on several streams count once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def kernel_busy_ms(events: Iterable[Any], iters: int) -> float | None:
    """Per-forward busy time from a profiler's events, or None when there was no kernel among them."""
    spans = [(e.time_range.start, e.time_range.end) for e in events if is_kernel(e)]
    return busy_us(spans) / 1e3 / iters if spans else None


def profile_events(forward: Callable[[], Any], device: torch.device, iters: int) -> list[Any]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize(device)
    with profiler_chatter_dropped(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            forward()
        torch.cuda.synchronize(device)
    return list(prof.events())


def device_columns(forward: Callable[[], Any], device: torch.device, latency_ms_p50: float | None, iters: int = 10,
                   events: Callable[..., list[Any]] = profile_events) -> dict[str, Any]:
    """device_ms, gpu_busy, launch_bound of a CUDA row; a `note` instead where the profiler saw no kernel."""
    device_ms = kernel_busy_ms(events(forward, device, iters), iters)
    if device_ms is None:
        return {"note": NO_KERNELS_NOTE}
    return busy_columns(device_ms, latency_ms_p50)


def busy_columns(device_ms: float | None, latency_ms_p50: float | None) -> dict[str, Any]:
    """device_ms, gpu_busy and launch_bound for one row; empty when either figure is missing (every CPU row)."""
    if device_ms is None or not latency_ms_p50:
        return {}
    busy = device_ms / latency_ms_p50
    return {"device_ms": device_ms, "gpu_busy": busy, "launch_bound": busy < LAUNCH_BOUND}

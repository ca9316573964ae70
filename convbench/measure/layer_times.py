"""Per-module time from the torch profiler, and a Chrome trace to open in chrome://tracing or Perfetto.

Every module's forward is wrapped in a profiler range named `module::<qualified name>` (forward pre- and
post-hooks), so times are inclusive of children. `cpu_time_us` is host time per forward; on CUDA it is
launch time, and `device_time_us` is the GPU time of the work launched inside the range (empty on the CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.autograd.profiler import record_function

from convbench.measure.clock import synchronize
from convbench.measure.quiet import profiler_chatter_dropped

PREFIX = "module::"


def module_times(model: nn.Module, forward: Callable[[], Any], device: torch.device, iters: int = 3,
                 trace_path: Path | None = None) -> dict[str, dict[str, float]]:
    names = {m: (n or "(model)") for n, m in model.named_modules()}
    open_ranges: dict[nn.Module, list[record_function]] = {}

    def enter(module: nn.Module, _inputs: Any) -> None:
        rf = record_function(PREFIX + names[module])
        rf.__enter__()
        open_ranges.setdefault(module, []).append(rf)

    def leave(module: nn.Module, _inputs: Any, _output: Any) -> None:
        open_ranges[module].pop().__exit__(None, None, None)

    handles = [h for m in names for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:
        forward()  # one untimed pass so lazy initialisation stays out of the trace
        with profiler_chatter_dropped(), torch.profiler.profile(activities=activities) as prof:
            for _ in range(iters):
                forward()
            synchronize(device)
    finally:
        for h in handles:
            h.remove()
    if trace_path is not None:
        prof.export_chrome_trace(str(trace_path))
    return attribute(prof.events(), iters, device.type == "cuda")


def attribute(events: Iterable[Any], iters: int, cuda: bool) -> dict[str, dict[str, float]]:
    """Per-module times per forward from the profiler's events. Only the host-side range of each module counts:
    on CUDA the profiler also records a device-side copy of every range (`gpu_user_annotation`, same name, no CPU
    time, starting later), which must neither replace nor add to it. A host range's device time is that of the
    device work its ops launched (torch's FunctionEvent.device_time_total), children included."""
    times: dict[str, dict[str, float]] = {}
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU or not event.name.startswith(PREFIX):
            continue
        entry = times.setdefault(event.name[len(PREFIX):], {"cpu_time_us": 0.0, "device_time_us": 0.0 if cuda else float("nan")})
        entry["cpu_time_us"] += event.cpu_time_total / iters
        if cuda:
            entry["device_time_us"] += event.device_time_total / iters
    return times

"""The one clock: how convbench times anything it reports.

Every reported timing (profile's iterations, compare's pairs, train's steps, the gate's and the pytest plugin's
rounds, the ceiling probes, selfcheck) is a list of calls timed here, one call at a time:
- CUDA: events recorded on the current stream before and after the call, then the host waits for the end event
  before reading the pair (torch.cuda.Event docs: elapsed_time is valid only once both events completed). The
  figure is the device's span from the first to the last piece of the call's work, launch gaps included, so a
  launch-bound call reads as slow as it runs.
- CPU: perf_counter around the call.
Warm-up calls run first and are never timed; then either a fixed number of calls or calls until `min_time`
seconds of timed work (and at least MIN_CALLS).

Standalone on purpose (torch and the standard library only): `convbench gate` copies this file beside its worker
into each side's scratch tree, so that the base and the candidate are timed by one and the same clock."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

MIN_CALLS = 5
MAX_CALLS = 10_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now() -> float:
    """Seconds on the host's monotonic high-resolution clock: for how long a command took, never for a figure of
    a call (that is call_ms)."""
    return time.perf_counter()


def call_ms(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(milliseconds, result) of one call of `fn` on `device`."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), result
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1e3, result


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call of `fn` on `device`."""
    return call_ms(fn, device)[0]


def samples(fn: Callable[[], Any], device: torch.device, warmup: int = 0, calls: int | None = None,
            min_time: float = 0.0) -> list[float]:
    """Milliseconds of each call of `fn` after `warmup` untimed calls: exactly `calls` where given, else calls until
    `min_time` seconds of timed work and at least MIN_CALLS."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    target = calls if calls is not None else MAX_CALLS
    out: list[float] = []
    total_ms = 0.0
    while len(out) < target:
        ms = time_ms(fn, device)
        out.append(ms)
        total_ms += ms
        if calls is None and len(out) >= MIN_CALLS and total_ms >= min_time * 1e3:
            break
    return out


def wall_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call measured on the host, the device drained before and after: the independent reading
    selfcheck holds call_ms against (on a GPU both must agree for a call with no launch gaps)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - t0) * 1e3


def spin(seconds: float) -> None:
    """Busy-wait for `seconds` on the host (a deliberate, exact slowdown; sleeping would free the core)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass

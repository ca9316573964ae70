"""Latency: warm up, then time each iteration on its own; report the distribution, not one mean.

CUDA iterations are timed with events recorded on the stream around each call (the host never waits
inside the loop, so launch overhead overlaps as it would in use); CPU iterations with perf_counter."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from convbench.measure.device import synchronize

NOISY_IQR_OVER_MEDIAN = 0.10
MIN_SAMPLES = 5
MAX_SAMPLES = 10_000


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    s = sorted(samples_ms)
    p50 = _percentile(s, 0.5)
    iqr = _percentile(s, 0.75) - _percentile(s, 0.25)
    return {
        "latency_ms_p50": p50,
        "latency_ms_p90": _percentile(s, 0.9),
        "latency_ms_p99": _percentile(s, 0.99),
        "latency_ms_iqr": iqr,
        "latency_ms_mean": statistics.fmean(s),
        "latency_ms_min": s[0],
        "timed_iters": len(s),
        "noisy": bool(p50 > 0 and iqr / p50 > NOISY_IQR_OVER_MEDIAN),
    }


def time_iterations(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int | None,
                    min_time_s: float) -> list[float]:
    """Per-iteration milliseconds: exactly `iters` if given, else until `min_time_s` of timed work
    (and at least MIN_SAMPLES)."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    synchronize(device)
    target = iters if iters is not None else MAX_SAMPLES
    samples: list[float] = []
    if cuda:
        events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        wall_start = time.perf_counter()
        while len(events) < target:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            events.append((start, end))
            # Only look at the clock every few launches so the host stays ahead of the GPU.
            if iters is None and len(events) >= MIN_SAMPLES and len(events) % 10 == 0:
                torch.cuda.synchronize(device)
                if time.perf_counter() - wall_start >= min_time_s:
                    break
        torch.cuda.synchronize(device)
        samples = [s.elapsed_time(e) for s, e in events]
    else:
        total = 0.0
        while len(samples) < target:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            samples.append(dt * 1e3)
            total += dt
            if iters is None and len(samples) >= MIN_SAMPLES and total >= min_time_s:
                break
    return samples

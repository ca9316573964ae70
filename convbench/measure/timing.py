"""Latency as a distribution, not one mean: the summary columns of a list of per-call milliseconds (which the one
clock, convbench.measure.clock, measured)."""
from __future__ import annotations

import statistics
from typing import Any

NOISY_IQR_OVER_MEDIAN = 0.10


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

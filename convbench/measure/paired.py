"""Paired, interleaved timing of two variants: the ratio of their latencies with a confidence interval.

Runs alternate A B, B A, A B, ... so drift (thermal, frequency, a neighbour on a shared machine) hits both
sides alike; each pair gives one ratio t_B / t_A, and the median ratio gets a distribution-free 95%
interval from the order statistics of the binomial (the sign-test interval for a median)."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from convbench.measure.device import synchronize, time_once


def paired_times(fn_a: Callable[[], Any], fn_b: Callable[[], Any], device: torch.device, warmup: int,
                 pairs: int) -> list[tuple[float, float]]:
    for _ in range(warmup):
        fn_a()
        fn_b()
    synchronize(device)
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            a = time_once(fn_a, device)
            b = time_once(fn_b, device)
        else:
            b = time_once(fn_b, device)
            a = time_once(fn_a, device)
        out.append((a, b))
    return out


def median_ci(values: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Median and its ~95% distribution-free interval (ranks n/2 -/+ z*sqrt(n)/2)."""
    s = sorted(values)
    n = len(s)
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return mid, s[lo], s[hi]


# A side whose time moves this much between the first and the last third of its pairs changed speed during the row
# (a mode of the process or the machine): the paired ratio still holds only if both sides moved together.
DRIFT_LIMIT = 1.5


def drift(times: list[float]) -> float:
    """Median of the last third over median of the first third (1.0 with fewer than 6 samples)."""
    third = len(times) // 3
    if third < 2:
        return 1.0
    first, last = sorted(times[:third]), sorted(times[-third:])
    return last[len(last) // 2] / first[len(first) // 2]


def drift_note(side: str, times: list[float]) -> str | None:
    moved = drift(times)
    if max(moved, 1 / moved) <= DRIFT_LIMIT:
        return None
    return (f"the {side}'s time moved {moved:.1f}x between the first and the last third of the pairs: the process or the "
            "machine changed speed during the row (rerun it)")

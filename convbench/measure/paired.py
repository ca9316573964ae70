"""Paired, interleaved timing of two variants: the ratio of their latencies with a confidence interval.

Runs alternate A B, B A, A B, ... so drift (thermal, frequency, a neighbour on a shared machine) hits both
sides alike; each pair gives one ratio t_B / t_A, and the median ratio gets a distribution-free interval from
exact binomial order statistics (convbench.stats.median_interval)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from convbench import stats
from convbench.measure import clock

LEVEL = 0.95
# The fewest pairs with a real 95% interval for their median ratio.
MIN_PAIRS = stats.smallest_n(LEVEL)


def paired_times(fn_a: Callable[[], Any], fn_b: Callable[[], Any], device: torch.device, warmup: int,
                 pairs: int) -> list[tuple[float, float]]:
    for _ in range(warmup):
        fn_a()
        fn_b()
    clock.synchronize(device)
    out = []
    for i in range(pairs):
        if i % 2 == 0:
            a = clock.time_ms(fn_a, device)
            b = clock.time_ms(fn_b, device)
        else:
            b = clock.time_ms(fn_b, device)
            a = clock.time_ms(fn_a, device)
        out.append((a, b))
    return out


def median_ratio(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(median, low, high) of per-pair ratios: the interval at `level`, (nan, nan) with too few pairs for it."""
    low, high = stats.median_interval(values, level)
    return stats.median(values), low, high


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

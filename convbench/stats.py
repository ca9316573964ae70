"""Statistics that say what they are: the median of timed samples and a distribution-free interval for it.

The interval takes its ranks from the exact binomial distribution: with n samples sorted, [x(k), x(n-k+1)] holds
the true median with probability P(k <= B(n, 1/2) <= n-k) whatever the distribution (continuous or not: the
interval is closed), and k is the largest rank for which that probability reaches the level. A normal
approximation to those ranks under-covers at the n a benchmark uses (92-93% at n = 11-21 for a nominal 95%,
75% at n = 3). Below the smallest n that reaches the level there is no interval: (nan, nan), never a narrower one.

No convbench imports: every layer (measure, analysis, the gate) takes its intervals from here."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

__all__ = ["coverage", "looks_level", "median", "median_interval", "median_ratio_interval", "smallest_n"]


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be a probability strictly between 0 and 1, got {level!r}")


@lru_cache(maxsize=4096)
def _tail(n: int, k: int) -> float:
    """P(B(n, 1/2) <= k), exactly, as a float."""
    return math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n


def coverage(n: int, k: int) -> float:
    """The exact probability that [x(k), x(n-k+1)] (1-based ranks) holds the median of n samples' distribution."""
    if not 1 <= k <= (n + 1) // 2:
        raise ValueError(f"rank {k} is not a lower rank of {n} samples")
    return 1.0 - 2.0 * _tail(n, k - 1)


@lru_cache(maxsize=4096)
def _rank(n: int, level: float) -> int:
    """The largest k whose interval reaches `level`, 0 where even [x(1), x(n)] does not."""
    best = 0
    for k in range(1, (n + 1) // 2 + 1):
        if coverage(n, k) >= level:
            best = k
        else:
            break
    return best


def smallest_n(level: float = 0.95) -> int:
    """The fewest samples with a median interval at `level` (6 at 95%, 8 at 99%)."""
    _check_level(level)
    n = 1
    while _rank(n, level) == 0:
        n += 1
    return n


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(low, high): a distribution-free interval for the median of the distribution `values` were drawn from, which
    holds it with probability at least `level`; (nan, nan) where there are too few values for that level
    (smallest_n)."""
    _check_level(level)
    s = sorted(values)
    n = len(s)
    if any(v != v for v in s):
        raise ValueError("median_interval of values that include NaN")
    k = _rank(n, level) if n else 0
    if k == 0:
        return math.nan, math.nan
    return s[k - 1], s[n - k]


def median_ratio_interval(old: Sequence[float], new: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(low, high) for median(new) / median(old) of two independent samples of positive values: each median's
    interval at sqrt(level), so that both hold at once with probability at least `level`, and whenever both hold the
    ratio lies between low = new_low / old_high and high = new_high / old_low. Distribution-free and conservative;
    (nan, nan) where either side has too few values (7 each at 95%)."""
    _check_level(level)
    old_lo, old_hi = median_interval(old, math.sqrt(level))
    new_lo, new_hi = median_interval(new, math.sqrt(level))
    if math.isnan(old_lo) or math.isnan(new_lo) or old_lo <= 0:
        return math.nan, math.nan
    return new_lo / old_hi, new_hi / old_lo


def looks_level(level: float, looks: int) -> float:
    """The level each of `looks` intervals must have so that all of them hold at once with probability at least
    `level` (Bonferroni: valid however the looks depend on each other, as successive looks at growing samples do)."""
    _check_level(level)
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    return 1.0 - (1.0 - level) / looks

"""The intervals convbench prints hold what they say: simulated coverage over thousands of draws from skewed and
heavy-tailed distributions, not the formula's own output."""
from __future__ import annotations

import math

import numpy as np
import pytest

from convbench import stats
from convbench.gate import lockstep
from convbench.gate.verdict import judge_pairs, judged

DRAWS = 4000
# name: (sampler, true median)
DISTRIBUTIONS = {
    "lognormal (skewed, like latencies)": (lambda rng, size: rng.lognormal(0.0, 0.5, size), 1.0),
    "exponential": (lambda rng, size: rng.exponential(1.0, size), math.log(2)),
    "Cauchy (heavy-tailed)": (lambda rng, size: rng.standard_cauchy(size), 0.0),
    "Pareto a=1.5 (heavy right tail)": (lambda rng, size: rng.pareto(1.5, size), 2 ** (1 / 1.5) - 1),
}
NS = list(range(stats.smallest_n(0.95), 61))


def _coverage(interval, sampler, median: float, n: int, rng) -> float:
    data = sampler(rng, (DRAWS, n))
    held = 0
    for row in data:
        lo, hi = interval(row.tolist())
        held += lo <= median <= hi
    return held / DRAWS


def _normal_approximation(values, z=1.96):
    """The ranks n/2 -/+ z sqrt(n)/2, as convbench used before: kept here to show the test can fail."""
    s = sorted(values)
    n = len(s)
    half = z * math.sqrt(n) / 2
    return s[max(0, math.floor(n / 2 - half))], s[min(n - 1, math.ceil(n / 2 + half) - 1)]


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_the_median_interval_covers_at_least_95_percent(name):
    sampler, median = DISTRIBUTIONS[name]
    rng = np.random.default_rng(20261207)
    seen = {n: _coverage(stats.median_interval, sampler, median, n, rng) for n in NS}
    pooled = sum(seen.values()) / len(seen)
    assert pooled >= 0.95, f"{name}: {pooled:.4f}"
    # Each n on its own: at least its exact level, less the simulation's own error (3 standard errors).
    for n, got in seen.items():
        exact = stats.coverage(n, stats._rank(n, 0.95))
        assert got >= exact - 3 * math.sqrt(exact * (1 - exact) / DRAWS), (name, n, got, exact)


def test_the_normal_approximation_fails_the_same_test():
    sampler, median = DISTRIBUTIONS["lognormal (skewed, like latencies)"]
    rng = np.random.default_rng(1)
    seen = [_coverage(_normal_approximation, sampler, median, n, rng) for n in (11, 16, 21)]
    assert sum(seen) / len(seen) < 0.95


def test_too_few_values_give_no_interval():
    assert stats.smallest_n(0.95) == 6
    assert all(math.isnan(v) for v in stats.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]))
    lo, hi = stats.median_interval([5.0, 1.0, 3.0, 2.0, 6.0, 4.0])
    assert (lo, hi) == (1.0, 6.0)                      # n = 6: the extremes, 96.9%
    assert stats.coverage(6, 1) == pytest.approx(1 - 2 / 64)
    assert stats.median([3.0, 1.0, 2.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        stats.median_interval([1.0] * 10, level=1.0)


@pytest.mark.parametrize("name", ["lognormal (skewed, like latencies)", "Pareto a=1.5 (heavy right tail)"])
def test_the_ratio_of_medians_interval_covers_at_least_95_percent(name):
    sampler, _ = DISTRIBUTIONS[name]
    rng = np.random.default_rng(7)
    held, trials = 0, 3000
    for _ in range(trials):
        n_old, n_new = rng.integers(7, 40, 2)
        old = 1 + sampler(rng, n_old)           # positive, like latencies
        new = 1.3 * (1 + sampler(rng, n_new))   # the true ratio of medians is 1.3
        lo, hi = stats.median_ratio_interval(old.tolist(), new.tolist())
        held += lo <= 1.3 <= hi
    assert held / trials >= 0.95
    assert all(math.isnan(v) for v in stats.median_ratio_interval([1.0] * 6, [1.0] * 20))  # 6 < 7 a side


def _noise_pairs(rng, n: int, factor: float) -> list:
    """n (base, head) rounds of a case whose head takes `factor` times the base's time, with lognormal noise."""
    base = np.exp(rng.normal(0, 0.08, n))
    head = factor * np.exp(rng.normal(0, 0.08, n))
    return [((float(b), 1.0), (float(h), 1.0)) for b, h in zip(base, head)]


class _SimulatedSide:
    def __init__(self, rng, factor: float) -> None:
        self.rng, self.factor = rng, factor

    def setup(self, name): pass
    def drop(self, name): pass

    def round(self, name):
        return float(self.factor * math.exp(self.rng.normal(0, 0.15))), 1.0


def test_the_gates_sequential_design_keeps_every_look_together_at_95_percent():
    """Unchanged code (true ratio 1) through the gate's real looks: the share of runs in which any look's interval
    missed 1 stays at most 5%; the same looks at a plain 95% each would miss more often, which is what the design
    corrects."""
    rng = np.random.default_rng(3)
    runs, missed, naive_missed, limit = 600, 0, 0, 1.05
    for _ in range(runs):
        pairs: dict = {}
        for p in range(2):
            lockstep.lockstep(_SimulatedSide(rng, 1.0), _SimulatedSide(rng, 1.0), ["case"], {"case": 10}, pairs, {},
                              head_first=p == 1, limit=limit, level=lockstep.look_level(2))
        pooled = [h[0] / b[0] for got in pairs["case"] for b, h in got]
        looks = [pooled[:k] for k in range(10, len(pooled) + 1, 10)]
        missed += any(not (lo <= 1 <= hi) for lo, hi in (stats.median_interval(v, lockstep.look_level(2)) for v in looks))
        naive_missed += any(not (lo <= 1 <= hi) for lo, hi in (stats.median_interval(v, 0.95) for v in looks))
    assert missed / runs <= 0.05
    assert naive_missed > missed


def test_the_gate_judges_all_passes_together_and_says_when_it_cannot_resolve():
    rng = np.random.default_rng(5)
    clear = {"slow": [_noise_pairs(rng, 20, 1.4), _noise_pairs(rng, 20, 1.4)],
             "same": [_noise_pairs(rng, 20, 1.0), _noise_pairs(rng, 20, 1.0)]}
    frame = judged(judge_pairs(clear, 0.15, passes=2)).set_index("benchmark")
    assert frame.loc["slow", "verdict"] == "regressed" and frame.loc["same", "verdict"] == "ok"
    assert frame.loc["slow", "pairs"] == 40
    # A pass that saw the change is no longer thrown away: one pass at 1.0x and one at 1.5x is not "ok".
    mixed = {"case": [_noise_pairs(rng, 20, 1.0), _noise_pairs(rng, 20, 1.5)]}
    verdict = judged(judge_pairs(mixed, 0.15, passes=2))["verdict"].iloc[0]
    assert verdict in ("regressed", "unresolved")
    # Noise wider than the limit: said, not passed.
    wide = {"case": [[((1.0, 1.0), (float(f), 1.0)) for f in np.exp(rng.normal(0, 0.6, 20))]]}
    row = judged(judge_pairs(wide, 0.15, passes=1)).iloc[0]
    assert row["verdict"] == "unresolved" and "cannot be told" in row["note"]

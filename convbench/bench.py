"""Benchmark cases, public: what `convbench gate` times in lockstep, what the pytest plugin times through
pytest-benchmark, and what a cases module (`convbench gate --cases mypkg.cases`) returns.

A case has a name, a number of timed rounds, warm-up rounds, and `body()`, which builds what it needs and returns
the no-argument call to time. The timing protocol around it is convbench's, the same everywhere
(convbench.gate.worker): the model in eval mode under inference_mode, warm-up rounds first, CUDA synchronised
before the clock is read, and each round's time in units of a fixed reference workload timed moments before, so
that a slower or busier machine moves both and only a change of the code registers.

    from convbench.bench import Case, model_case

    def gate_cases(device):
        return {c.name: c for c in (model_case("mynet.models:build", batch_size=8, device=device),
                                    Case("blocks:dense", lambda: my_dense_forward(device), rounds=30))}
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from convbench.gate.counted import count_instructions
from convbench.gate.worker import Case, ModelCase, model_case, reference_workload, slowed, timed_round

__all__ = ["Case", "ModelCase", "count_instructions", "model_case", "normalized_round", "ratio_clock",
           "reference_workload", "slowed", "timed_round"]


_virtual = 0.0
CREEP = 1e-12  # each reading advances it this much, so that pytest-benchmark can measure its resolution


def ratio_clock() -> float:
    """A clock for pytest-benchmark (its `timer`) that advances by body / reference per round (normalized_round): its
    "seconds" are multiples of the reference workload, measured by convbench's one clock."""
    global _virtual
    _virtual += CREEP
    return _virtual


def normalized_round(fn: Callable[[], Any], device: torch.device | str) -> Callable[[], None]:
    """`timed_round` for pytest-benchmark: each call advances ratio_clock by t_fn / t_ref."""
    one_round = timed_round(fn, torch.device(device))

    def body() -> None:
        global _virtual
        t_fn, t_ref = one_round()
        _virtual += t_fn / t_ref
    return body

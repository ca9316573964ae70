"""Reference-normalised timing, shared by pytest-benchmark and `convbench gate`'s paired workers.

Each timed round runs the reference workload and then the benchmark on the same device, and yields
t_benchmark / t_reference (the fastest reference run so far). For pytest-benchmark, `ratio_clock` (set as
--benchmark-timer in suites/pytest.ini) reads a virtual clock advanced by that ratio, so its per-round "time"
is the ratio to a reference measured moments before: machine speed and load move both sides and cancel.
The clock also creeps with real time at 1e-9 of its rate so pytest-benchmark can measure its resolution."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

_virtual = 0.0


def ratio_clock() -> float:
    return _virtual + time.perf_counter() * 1e-9


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # a host clock does not wait for the GPU
    return time.perf_counter() - t0


_WORKLOADS: dict[str, Callable[[], Any]] = {}


def reference_workload(device: torch.device) -> Callable[[], Any]:
    """A fixed conv stack, the kind of work every benchmark here does (about 45 M MACs)."""
    key = str(device)
    if key not in _WORKLOADS:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(64, 32, 1)).to(device).eval()
        x = torch.randn(1, 32, 28, 28, device=device)

        def run() -> None:
            with torch.inference_mode():
                net(x)
        _WORKLOADS[key] = run
    return _WORKLOADS[key]


def timed_round(fn: Callable[[], Any], device: torch.device) -> Callable[[], tuple[float, float]]:
    """One timed round: returns (t_fn, t_ref) in seconds, where t_ref is the fastest reference run seen so far
    (20 before the first round, 3 more each round). Load only ever adds time, so the fastest run is the
    stable one on both sides: the minimum over rounds of t_fn / t_ref estimates min(t_fn) / min(t_ref)."""
    reference = reference_workload(device)
    fastest = [min(_timed(reference, device) for _ in range(20))]

    def one_round() -> tuple[float, float]:
        fastest[0] = min(fastest[0], *(_timed(reference, device) for _ in range(3)))
        return _timed(fn, device), fastest[0]
    return one_round


def normalized_round(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """`timed_round` for pytest-benchmark: each round advances the virtual clock by t_fn / t_ref."""
    one_round = timed_round(fn, device)

    def body() -> None:
        global _virtual
        t_fn, t_ref = one_round()
        _virtual += t_fn / t_ref
    return body

"""Regression suites: pytest-benchmark timings (CPU always, CUDA when present) and the exact-count gate.

Timing gate recipe (README): save a baseline once, then compare every run against it:
    pytest suites --benchmark-save=baseline
    pytest suites --benchmark-compare=0001 --benchmark-compare-fail=min:60%

Timings are ratios: every round times a fixed reference workload on the same device and then the benchmark,
and reports t_benchmark / t_reference (suites/reference.py), so a slower or busier machine moves both sides
and only a change relative to the reference registers."""
from __future__ import annotations

import os

import pytest
import torch

from suites.reference import normalized_round


# One intra-op thread: on a small shared machine, a second thread competes with whatever else runs there,
# and that jitter, not the code under test, would dominate the tails.
SUITE_THREADS = int(os.environ.get("CONVBENCH_SUITE_THREADS", "1"))
torch.set_num_threads(SUITE_THREADS)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda"] = torch.version.cuda
    machine_info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        import subprocess
        machine_info["gpu"] = torch.cuda.get_device_name(0)
        try:
            machine_info["gpu_driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                                        capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            machine_info["gpu_driver"] = None
    machine_info["timer_unit"] = "multiples of the reference workload's latency (suites/reference.py)"


@pytest.fixture()
def device_benchmark(benchmark, request):
    """Time `fn` on `device` in units of the reference workload. CONVBENCH_SUITE_SLOWDOWN=<part of a test id>
    runs that benchmark's body twice, a deliberate 2x slowdown that proves the gate catches it."""

    def run(fn, device: str = "cpu", rounds: int = 15, warmup_rounds: int = 3):
        dev = torch.device(device)
        slow = os.environ.get("CONVBENCH_SUITE_SLOWDOWN")
        target = fn
        if slow and slow in request.node.nodeid:
            def target():
                fn()
                fn()
        benchmark.extra_info["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        return benchmark.pedantic(normalized_round(target, dev), rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)

    return run

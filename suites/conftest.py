"""Regression suites: pytest-benchmark timings (CPU always, CUDA when present) and the exact-count gate.

The latency gate is `convbench gate` (docs/ci.md): it times these same bodies for the base revision and the
candidate on one machine in one run. `pytest suites --benchmark-save=NAME` saves a
record under results/benchmarks/<machine>/, which `convbench gate --against record` holds a dedicated runner to.

Timings are ratios: every round times a fixed reference workload on the same device and then the benchmark,
and reports t_benchmark / t_reference (convbench.bench), so a slower or busier machine moves both sides and only
a change relative to the reference registers."""
from __future__ import annotations

import pytest
import torch

from convbench.bench import normalized_round
from suites.cases import WARMUP_ROUNDS


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
    machine_info["timer_unit"] = "multiples of the reference workload's latency (convbench.bench)"


@pytest.fixture()
def device_benchmark(benchmark, request):
    """Time `fn` on `device` in units of the reference workload."""

    def run(fn, device: str = "cpu", rounds: int = 15, warmup_rounds: int = WARMUP_ROUNDS):
        dev = torch.device(device)
        benchmark.extra_info["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        return benchmark.pedantic(normalized_round(fn, dev), rounds=rounds, iterations=1,
                                  warmup_rounds=warmup_rounds)

    return run

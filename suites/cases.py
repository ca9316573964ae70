"""convbench's own latency benchmarks as data (convbench.bench cases), so that pytest-benchmark
(suites/test_latency.py) and `convbench gate`'s paired workers time exactly the same bodies under the same names.

A case's name is its pytest test name, e.g. `test_model[resnet18-cpu]`."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from convbench.bench import Case
from convbench.zoo.comparisons import COMPARISONS, get_cases
from convbench.zoo.registry import create_model

# One intra-op thread: on a small shared machine, a second thread competes with whatever else runs there,
# and that jitter, not the code under test, would dominate the tails.
SUITE_THREADS = int(os.environ.get("CONVBENCH_SUITE_THREADS", "1"))
torch.set_num_threads(SUITE_THREADS)

MODELS = {  # name: input size small enough for a 2-core CPU, large enough to keep every stage's grid > 1x1
    "resnet18": 64, "resnet50": 64, "resnext50_32x4d": 64, "googlenet": 64, "bn_inception": 64,
    "inception_v3_noaux": 107, "vgg11": 64, "alexnet": 96,
}
# Each block at least about as much work as the reference, so Python overhead does not dominate the ratio.
BLOCK_SHAPE = {"factorization": (64, 28, 28), "asymmetric": (64, 28, 28), "reduction": (64, 28, 28), "grouped": (128, 56, 56)}
BLOCKS = [(case, v) for name in COMPARISONS for case in get_cases(name) if not case.whole_network for v in case.variants]
MODEL_ROUNDS, BLOCK_ROUNDS, WARMUP_ROUNDS = 20, 30, 3


def block_id(case, variant) -> str:
    return f"{case.comparison}:{case.name}:{variant.name}".replace(" ", "_")


def _forward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run():
        with torch.inference_mode():
            module(x)
    return run


def model_body(name: str, device: str) -> Callable[[], Any]:
    torch.manual_seed(0)
    model = create_model(name).to(device).eval()
    return _forward(model, torch.randn(1, 3, MODELS[name], MODELS[name], device=device))


def block_body(case, variant, device: str) -> Callable[[], Any]:
    torch.manual_seed(0)
    shape = BLOCK_SHAPE.get(case.comparison, case.shape)  # pooling: AlexNet's own grids, already a reference's work
    return _forward(variant.build(shape[0]).to(device).eval(), torch.randn(1, *shape, device=device))


def gate_cases(device: str = "cpu") -> dict[str, Case]:
    """Every benchmark of the latency suite on `device`, keyed by its pytest test name."""
    cases = {}
    for name in sorted(MODELS):
        test = f"test_model[{name}-{device}]"
        cases[test] = Case(test, lambda name=name: model_body(name, device), MODEL_ROUNDS, WARMUP_ROUNDS)
    for case, variant in BLOCKS:
        test = f"test_block[{block_id(case, variant)}-{device}]"
        cases[test] = Case(test, lambda c=case, v=variant: block_body(c, v, device), BLOCK_ROUNDS, WARMUP_ROUNDS)
    return cases

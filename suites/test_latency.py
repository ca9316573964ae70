"""Latency of representative zoo models and of every `compare` block pair, at small sizes so that the CPU
suite stays within a minute. Units: multiples of the reference workload's time (suites/reference.py)."""
from __future__ import annotations

import pytest
import torch

from convbench.comparisons import COMPARISONS, get_cases
from convbench.registry import create_model

MODELS = {  # name: input size small enough for a 2-core CPU, large enough to keep every stage's grid > 1x1
    "resnet18": 64, "resnet50": 64, "resnext50_32x4d": 64, "googlenet": 64, "bn_inception": 64,
    "inception_v3_noaux": 107, "vgg11": 64, "alexnet": 96,
}
# Each block at least about as much work as the reference, so Python overhead does not dominate the ratio.
BLOCK_SHAPE = {"factorization": (64, 28, 28), "asymmetric": (64, 28, 28), "reduction": (64, 28, 28), "grouped": (128, 56, 56)}
BLOCKS = [(case, v) for name in COMPARISONS for case in get_cases(name) if not case.whole_network for v in case.variants]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU suite skipped"))]


def _forward(module: torch.nn.Module, x: torch.Tensor):
    def run():
        with torch.inference_mode():
            module(x)
    return run


@pytest.mark.benchmark(group="zoo")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model(device_benchmark, name, device):
    torch.manual_seed(0)
    model = create_model(name).to(device).eval()
    x = torch.randn(1, 3, MODELS[name], MODELS[name], device=device)
    device_benchmark(_forward(model, x), device, rounds=20)


@pytest.mark.benchmark(group="blocks")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case, variant", BLOCKS, ids=[f"{c.comparison}:{c.name}:{v.name}".replace(" ", "_") for c, v in BLOCKS])
def test_block(device_benchmark, case, variant, device):
    torch.manual_seed(0)
    shape = BLOCK_SHAPE[case.comparison]
    module = variant.build(shape[0]).to(device).eval()
    x = torch.randn(1, *shape, device=device)
    device_benchmark(_forward(module, x), device, rounds=30)

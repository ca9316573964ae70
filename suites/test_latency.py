"""Latency of representative zoo models and of every `compare` block pair, at small sizes so that the CPU
suite stays within a minute. Units: multiples of the reference workload's time (convbench.bench).
The bodies live in suites/cases.py, shared with `convbench gate`."""
from __future__ import annotations

import pytest
import torch

from suites.cases import BLOCK_ROUNDS, BLOCKS, MODEL_ROUNDS, MODELS, block_body, block_id, model_body

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU suite skipped"))]


@pytest.mark.benchmark(group="zoo")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model(device_benchmark, name, device):
    device_benchmark(model_body(name, device), device, rounds=MODEL_ROUNDS)


@pytest.mark.benchmark(group="blocks")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case, variant", BLOCKS, ids=[block_id(c, v) for c, v in BLOCKS])
def test_block(device_benchmark, case, variant, device):
    device_benchmark(block_body(case, variant, device), device, rounds=BLOCK_ROUNDS)

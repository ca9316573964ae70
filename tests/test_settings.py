"""The settings a row says it ran under are the ones its measuring process applied (cuDNN autotuning, TF32, threads,
the device), read back live in every process that measures: the sweep's own, an isolated child, a DDP rank. Driven
on the CPU through a child that writes its live state, a stubbed GPU count."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from convbench.run import settings
from convbench.run.config import ProfileConfig
from convbench.errors import UserError
from convbench.run.profile import run_profile

CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA


@pytest.fixture()
def probe(tmp_path, monkeypatch):
    """A user model whose builder writes the live torch settings of the process that builds it."""
    (tmp_path / "probe.py").write_text(textwrap.dedent('''
        import json, os
        import torch
        from torch import nn

        def build():
            if os.environ.get("PROBE_OUT"):
                with open(os.environ["PROBE_OUT"], "a") as f:
                    f.write(json.dumps({"pid": os.getpid(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
                                        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                                        "matmul_precision": torch.get_float32_matmul_precision(),
                                        "threads": torch.get_num_threads()}) + "\\n")
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "probe.jsonl"
    monkeypatch.setenv("PROBE_OUT", str(out))
    yield out
    sys.modules.pop("probe", None)


LIVE = ("cudnn_benchmark", "tf32_cudnn", "matmul_precision", "threads")


@pytest.mark.parametrize("autotune, tf32, threads", [(False, True, 1), (True, False, 2)])
def test_an_isolated_child_applies_the_settings_and_its_rows_record_its_own_state(probe, autotune, tf32, threads):
    before = settings._snapshot()
    torch.backends.cudnn.benchmark = not autotune  # the parent's state must not be what the rows say
    try:
        rows = run_profile(ProfileConfig(arch="probe:build", batch_sizes=(1, 2), input_size=16, iters=2, warmup=0,
                                         cpu_memory=False, isolate=True, cudnn_benchmark=autotune, tf32=tf32,
                                         threads=threads)).rows
        assert torch.backends.cudnn.benchmark is (not autotune)  # and the parent's own state is given back
    finally:
        settings._restore(before)
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    child = [s for s in seen if s["pid"] != os.getpid()]
    assert len(child) >= 1, seen
    expected = {"cudnn_benchmark": autotune, "tf32_cudnn": tf32, "matmul_precision": "high" if tf32 else "highest",
                "threads": threads}
    assert {k: child[-1][k] for k in LIVE} == expected
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row in rows:
        assert row["pid"] == child[-1]["pid"] != os.getpid()
        assert {k: row[k] for k in LIVE} == expected
        assert row["tf32_matmul"] is tf32


def test_in_process_rows_record_the_applied_settings_and_the_caller_keeps_its_own():
    before = settings._snapshot()
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:tiny", input_size=16, iters=2, warmup=0,
                                     cpu_memory=False, isolate=False, cudnn_benchmark=not before["benchmark"], threads=1)).rows
    assert rows[0]["cudnn_benchmark"] is (not before["benchmark"]) and rows[0]["threads"] == 1
    assert rows[0]["pid"] == os.getpid()
    assert settings._snapshot() == before


def test_compare_and_train_children_apply_their_settings_too():
    from convbench.run.compare import ComparePlan
    from convbench.run.config import CompareConfig
    from convbench.zoo.comparisons import get_cases
    from convbench.run.config import TrainConfig
    from convbench.run.train import run_train
    case = next(c for c in get_cases("reduction"))
    plan = ComparePlan(CompareConfig(name="reduction", pairs=6, warmup=0, shape=(8, 8, 8), cudnn_benchmark=False, threads=1))
    rows = [r.values for r in plan.isolated_rows(case, lambda event: None)]
    assert len(rows) == 3
    assert all(r["cudnn_benchmark"] is False and r["threads"] == 1 and r["pid"] != os.getpid() for r in rows)
    run = run_train(TrainConfig(arch="convbench.selfcheck.fixtures:tiny10", steps=2, batch_size=2, input_size=16, isolate=True,
                                cudnn_benchmark=False, tf32=True, threads=1))
    row = run.rows[0]
    assert row["status"] == "ok" and row["pid"] != os.getpid()
    assert (row["cudnn_benchmark"], row["matmul_precision"], row["threads"]) == (False, "high", 1)


# 2. --by-layer: the device-side copy of a range neither replaces nor adds to its host-side entry.


# 7 and 8. Device time: kernels only, the union of their intervals, the same in every mode; no kernel, no figure.


# 3 and 4. Memory: compiled rows measure the eager module; an unmeasured pass precedes every peak.


# 6. A compiled module is compiled per row, static shapes, from an empty cache.


# 9. The smaller findings.

def test_more_ranks_than_gpus_is_one_line_naming_both(monkeypatch):
    from convbench.run.config import TrainConfig
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="--nproc-per-node 2 asks for one GPU per process, but torch sees 1 GPU here"):
        TrainConfig(device="cuda", nproc_per_node=2)


def test_train_input_size_is_checked():
    from convbench.run.config import TrainConfig
    with pytest.raises(UserError, match="--input-size must be positive"):
        TrainConfig(input_size=0)


def test_the_resnext_forms_check_runs_in_full_fp32_whatever_the_run_asked(monkeypatch):
    from convbench.run.compare import _max_abs_diff
    from convbench.zoo.comparisons import get_cases
    case = next(c for c in get_cases("grouped") if c.name.startswith("ResNeXt block forms"))
    variants = {v.name: v.build(64).eval() for v in case.variants}
    seen = []
    for module in variants.values():
        module.register_forward_hook(lambda *a: seen.append((torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())))
    with settings.applied(SimpleNamespace(tf32=True)):
        diffs = _max_abs_diff(case, variants, torch.randn(1, 64, 8, 8))
        assert torch.get_float32_matmul_precision() == "high"  # the run's own setting is back after the check
    assert set(seen) == {(False, "highest")} and len(diffs) == 2 and max(diffs.values()) < 1e-4


def test_a_ddp_rank_drives_the_gpu_of_its_local_rank(monkeypatch):
    from convbench.run.engines import local_device
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    env = {"RANK": "9", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8"}
    assert local_device("cuda", env) == "cuda:1"
    assert local_device("cpu", env) == "cpu"

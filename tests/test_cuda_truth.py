"""Issue 19: the CUDA path measures what its rows say. Each finding of the code reading is driven here on the CPU
through a seam: a child process that applies its own settings, synthetic profiler events, a fake allocator, a
stubbed torch.compile, a stubbed GPU count."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from convbench.run import modes, settings
from convbench.run.config import ProfileConfig
from convbench.errors import UserError
from convbench.measure import device_time, layer_times, memory
from convbench.measure.device import PeakMemory
from convbench.run.profile import ProfilePlan, run_profile

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
    plan = ComparePlan(CompareConfig(name="reduction", pairs=3, warmup=0, shape=(8, 8, 8), cudnn_benchmark=False, threads=1))
    rows = [r.values for r in plan.isolated_rows(case, lambda event: None)]
    assert len(rows) == 3
    assert all(r["cudnn_benchmark"] is False and r["threads"] == 1 and r["pid"] != os.getpid() for r in rows)
    run = run_train(TrainConfig(arch="resnet18", steps=2, batch_size=2, input_size=32, isolate=True, cudnn_benchmark=False,
                                tf32=True, threads=1))
    row = run.rows[0]
    assert row["status"] == "ok" and row["pid"] != os.getpid()
    assert (row["cudnn_benchmark"], row["matmul_precision"], row["threads"]) == (False, "high", 1)


# 2. --by-layer: the device-side copy of a range neither replaces nor adds to its host-side entry.

def _event(name, device_type, cpu_us=0.0, device_us=0.0, start=0.0, end=0.0, annotation=False, activity=None):
    return SimpleNamespace(name=name, device_type=device_type, cpu_time_total=cpu_us, device_time_total=device_us,
                           is_user_annotation=annotation, activity_type=activity,
                           time_range=SimpleNamespace(start=start, end=end))


def test_layer_times_take_cpu_time_from_the_host_range_and_ignore_the_gpu_annotation():
    events = []
    for _ in range(2):  # two forwards
        events += [_event("module::layer1", CPU, cpu_us=300, device_us=80, annotation=True),
                   _event("module::layer1.conv", CPU, cpu_us=100, device_us=50, annotation=True),
                   _event("aten::conv2d", CPU, cpu_us=90, device_us=50),
                   # later in the list, as the profiler emits them: the device-side copies, no CPU time
                   _event("module::layer1", CUDA, device_us=85, annotation=True, activity="gpu_user_annotation"),
                   _event("module::layer1.conv", CUDA, device_us=52, annotation=True, activity="gpu_user_annotation")]
    times = layer_times.attribute(events, iters=2, cuda=True)
    assert times == {"layer1": {"cpu_time_us": 300.0, "device_time_us": 80.0},
                     "layer1.conv": {"cpu_time_us": 100.0, "device_time_us": 50.0}}
    cpu_only = layer_times.attribute(events[:3], iters=2, cuda=False)
    assert cpu_only["layer1"]["cpu_time_us"] == 150.0 and cpu_only["layer1"]["device_time_us"] != cpu_only["layer1"]["device_time_us"]


# 7 and 8. Device time: kernels only, the union of their intervals, the same in every mode; no kernel, no figure.

def test_device_time_counts_kernels_only_and_overlapping_kernels_once():
    events = [_event("volta_sgemm", CUDA, start=0, end=100, activity="kernel"),
              _event("other_stream_kernel", CUDA, start=50, end=150, activity="kernel"),
              _event("Memcpy HtoD (Pageable -> Device)", CUDA, start=200, end=400, activity="gpu_memcpy"),
              _event("Memset (Device)", CUDA, start=400, end=450),
              _event("module::layer1", CUDA, start=0, end=1000, annotation=True, activity="gpu_user_annotation"),
              _event("aten::conv2d", CPU, start=0, end=2000),
              _event("later_kernel", CUDA, start=500, end=600, activity="kernel")]
    assert device_time.busy_us([(0, 100), (50, 150), (500, 600)]) == 250
    assert device_time.kernel_busy_ms(events, iters=2) == pytest.approx(0.125)


def test_no_kernel_recorded_gives_no_figure_and_a_note():
    quiet = [_event("module::x", CUDA, start=0, end=10, annotation=True, activity="gpu_user_annotation")]
    cols = device_time.device_columns(lambda: None, torch.device("cpu"), 2.0, events=lambda *a: quiet)
    assert cols == {"note": device_time.NO_KERNELS_NOTE}


@pytest.mark.parametrize("mode", ["eager", "graphs", "compile+graphs"])
def test_gpu_busy_is_measured_the_same_way_in_every_mode(mode, monkeypatch):
    """A graphs row's busy share comes from its kernels, like any other row's, so idle gaps inside a replay show."""
    calls = []

    def events(forward, device, iters):
        calls.append(mode)
        return [_event("k", CUDA, start=0, end=400 * iters, activity="kernel")]
    cols = device_time.device_columns(lambda: None, torch.device("cuda"), latency_ms_p50=1.0, iters=5, events=events)
    assert calls == [mode] and cols == {"device_ms": 0.4, "gpu_busy": 0.4, "launch_bound": True}


# 3 and 4. Memory: compiled rows measure the eager module; an unmeasured pass precedes every peak.

class _FakeAllocator:
    def __init__(self, monkeypatch):
        self.log: list[str] = []
        self.allocated = 0
        for name, fn in {"synchronize": lambda *a: None, "empty_cache": lambda: None,
                         "reset_peak_memory_stats": lambda *a: self.log.append("reset"),
                         "memory_allocated": lambda *a: self.allocated,
                         "max_memory_allocated": lambda *a: self.allocated + 1000}.items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_each_peak_follows_an_unmeasured_pass_so_autotuning_workspaces_stay_out(monkeypatch):
    fake = _FakeAllocator(monkeypatch)

    class Logged(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            fake.log.append("train" if self.training else "infer")
            return self.conv(x).mean((2, 3))
    peaks = memory.peaks(Logged(), torch.zeros(2, 3, 8, 8), None, reader=PeakMemory("cuda"))
    assert fake.log == ["infer", "reset", "infer", "train", "reset", "train"]
    assert peaks == {"peak_mem_infer_bytes": 1000, "peak_mem_train_bytes": 1000}
    fake.log.clear()
    assert memory.peaks(Logged(), torch.zeros(2, 3, 8, 8), None, train=False, reader=PeakMemory("cuda")) == {"peak_mem_infer_bytes": 1000}
    assert fake.log == ["infer", "reset", "infer"]


def test_a_compiled_row_measures_memory_on_the_eager_module_and_says_so(monkeypatch):
    from convbench.run import profile as runner
    seen = []
    monkeypatch.setattr(memory, "cpu_peaks_in_child", lambda *a, **k: seen.append(a) or {"peak_mem_infer_bytes": 1})
    monkeypatch.setattr(modes, "compiled", lambda model, graphs=False: model)
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:tiny", input_size=16, iters=2, warmup=0,
                                     isolate=False, modes=("eager", "compile"))).rows
    assert [r["note"] for r in rows] == [None, "memory: peaks are of the eager forward, not the compile one"]
    assert [r["status"] for r in rows] == ["ok", "ok"]  # a note is not a failure
    assert runner.LiveModel.__dataclass_fields__.keys() == {"module"}  # no compiled module kept for memory passes


# 6. A compiled module is compiled per row, static shapes, from an empty cache.

def test_compile_mode_compiles_each_batch_size_afresh_with_static_shapes(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:tiny", batch_sizes=(1, 2), input_size=16, iters=2,
                                     warmup=0, cpu_memory=False, isolate=False, modes=("compile",))).rows
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert calls == ["reset", {"dynamic": False, "mode": None}] * 2


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


def test_static_sweeps_never_fork_after_cuda_is_initialised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = ProfileConfig(arch="all", device="cuda", metrics="static", isolate=False)
    assert ProfilePlan(cuda)._counting_workers(37) == 1
    assert ProfilePlan(ProfileConfig(arch="all", metrics="static"))._counting_workers(37) == min(len(os.sched_getaffinity(0)), 8)


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


def test_selfcheck_counts_agree_without_fvcore(monkeypatch):
    import importlib.util
    from convbench.selfcheck import battery
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fvcore" else real(name, *a))
    check = battery.counts_agree(battery.Context(torch.device("cpu"), quick=True))
    assert check.status == "pass" and "fvcore" not in check.figure and "fvcore is not installed" in check.note
    assert "dispatch 148,557,824, FlopCounterMode/2 148,557,824" in check.figure


def test_a_ddp_rank_drives_the_gpu_of_its_local_rank(monkeypatch):
    from convbench.run.engines import local_device
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    env = {"RANK": "9", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8"}
    assert local_device("cuda", env) == "cuda:1"
    assert local_device("cpu", env) == "cpu"

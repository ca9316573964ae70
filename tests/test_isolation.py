"""Issue 10's CPU half: nothing held between rows, measurements that fail on their own, and --isolate."""
from __future__ import annotations

import gc
import os
import sys
import textwrap
import weakref

import pytest
import torch
from torch import nn

from cli_helpers import run
from convbench.run.config import ProfileConfig
from convbench.measure import memory
from convbench.measure.device import PeakMemory
from convbench.measure.memory import count_saved_bytes
from convbench.zoo.registry import create_model
from convbench.run.profile import run_profile
from convbench.zoo.specs import resolve_models


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_counting_saved_bytes_keeps_no_input_activation_or_output_alive():
    model = create_model("resnet18").eval()
    x = torch.zeros(2, 3, 64, 64)
    seen: dict[str, weakref.ref] = {}

    def keep(name):
        def hook(module, inputs, output) -> None:
            seen[name] = weakref.ref(output)
        return hook
    hooks = [model.layer1.register_forward_hook(keep("activation")), model.register_forward_hook(keep("output"))]
    seen["input"] = weakref.ref(x)
    counted = count_saved_bytes(model, x)
    for h in hooks:
        h.remove()
    del x
    # No gc.collect(): the graph must die by reference counting, not wait for (or escape) the cycle collector.
    assert {name: ref() is None for name, ref in seen.items()} == {"input": True, "activation": True, "output": True}
    assert counted == {"saved_bytes": 50436608, "saved_act_bytes": 3663360}  # the same bytes as before the fix
    assert not model.training


def test_repeated_counts_on_real_tensors_leave_no_tensor_behind():
    spec = resolve_models("resnet18", 64)[0]
    memory.saved_bytes(spec, 4, "bf16", "cpu")  # first call: lazy initialisations stay out of the count
    before = _live_tensors()
    for _ in range(3):
        memory.saved_bytes(spec, 4, "bf16", "cpu")
    assert _live_tensors() == before


def test_a_sweep_holds_nothing_once_its_rows_are_done():
    config = ProfileConfig(arch="resnet18,googlenet,alexnet", dtype="bf16", batch_sizes=(2,), input_size=64, iters=2,
                           warmup=1, cpu_memory=False, isolate=False)
    run_profile(config)  # warm: lazy state of torch and the count cache
    before = _live_tensors()
    run = run_profile(config)
    assert all(r["latency_ms_p50"] > 0 and r["saved_bytes"] > 0 for r in run.rows)
    del run
    assert _live_tensors() == before


def test_a_failed_memory_pass_keeps_the_timing_and_the_row_is_partial(monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("forced failure of the memory pass")
    monkeypatch.setattr(memory, "cpu_peaks_in_child", fails)
    run = run_profile(ProfileConfig(arch="resnet18", input_size=64, iters=3, warmup=0, isolate=False))
    row = run.rows[0]
    assert row["status"] == "partial" and row["latency_ms_p50"] > 0 and row["timed_iters"] == 3
    assert row["error"] == "memory: RuntimeError: forced failure of the memory pass"
    assert "peak_mem_train_bytes" not in row or row["peak_mem_train_bytes"] is None


class _FakeCuda:
    """The allocator statistics cuda_peaks reads, so that its control flow runs on the CPU."""

    def __init__(self, monkeypatch):
        self.allocated = 0
        for name, fn in {"synchronize": lambda *a: None, "empty_cache": lambda: None, "reset_peak_memory_stats": lambda *a: None,
                         "memory_allocated": lambda *a: self.allocated, "max_memory_allocated": lambda *a: self.allocated + 1000}.items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_cuda_peaks_keep_the_inference_peak_when_training_cannot_run(monkeypatch):
    _FakeCuda(monkeypatch)
    # Batch norm over a 1x1 grid at batch 1: inference works, a training forward cannot.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4)).eval()
    peaks = memory.peaks(model, torch.zeros(1, 3, 8, 8), None, reader=PeakMemory("cuda"))
    assert peaks["peak_mem_infer_bytes"] == 1000 and "peak_mem_train_bytes" not in peaks
    assert peaks["mem_note"].startswith("training pass failed: ValueError: Expected more than 1 value per channel")
    assert not model.training


@pytest.fixture()
def hostile_models(tmp_path, monkeypatch):
    """User models that kill, hang or cannot be imported in a child process."""
    (tmp_path / "hostile.py").write_text(textwrap.dedent('''
        import os, signal, time
        import torch
        from torch import nn

        if os.environ.get("HOSTILE_PARENT_PID") not in (None, str(os.getpid())):
            raise ImportError("hostile needs a driver this process lacks")

        class Act(nn.Module):
            def __init__(self, what):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
                self.what = what
            def forward(self, x):
                if x.shape[0] == 2 and x.device.type != "meta" and not torch.jit.is_tracing():
                    if self.what == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    time.sleep(60)
                return self.conv(x).mean((2, 3))

        def killer():
            return Act("kill")

        def hangs():
            return Act("hang")

        def tiny():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hostile"
    sys.modules.pop("hostile", None)


def _isolated(arch: str, **kw) -> ProfileConfig:
    return ProfileConfig(arch=arch, batch_sizes=(1, 2), input_size=16, iters=2, warmup=0, cpu_memory=False, isolate=True, **kw)


def test_a_model_that_kills_its_process_becomes_an_error_row_and_the_next_model_is_measured(hostile_models):
    rows = run_profile(_isolated("hostile:killer,hostile:tiny")).rows
    assert [(r["model"], r["batch_size"], r["status"]) for r in rows] == [
        ("hostile:killer", 1, "ok"), ("hostile:killer", 2, "error"), ("hostile:tiny", 1, "ok"), ("hostile:tiny", 2, "ok")]
    assert rows[1]["error"] == "child killed by SIGKILL during timing (batch 2)"
    assert rows[0]["latency_ms_p50"] > 0 and rows[3]["latency_ms_p50"] > 0
    assert rows[0]["note"] == "memory: CPU peaks not measured (cpu_memory off)"  # left off by choice: a note, not a failure


def test_a_hanging_row_is_killed_after_the_timeout(hostile_models):
    rows = run_profile(_isolated("hostile:hangs", timeout=8)).rows
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[1]["error"] == "child timed out after 8 s and was killed during timing (batch 2)"


def test_a_model_the_child_cannot_import_gives_one_line_per_row(hostile_models, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HOSTILE_PARENT_PID", str(os.getpid()))
    code, out, err = run(capsys, "profile", "--arch", "hostile:tiny", "--isolate", "--batch-size", "1,2", "--iters", "1",
                         "--input-size", "16", "--out", str(tmp_path / "o"))
    assert code == 1 and err == ""  # rows that failed: a script must not read success
    rows = run_profile(_isolated("hostile:tiny")).rows
    assert [r["status"] for r in rows] == ["error", "error"]
    assert rows[0]["error"].startswith("child exited with code 2: cannot import 'hostile' for --arch hostile:tiny (from ")
    assert rows[1]["error"].startswith("not run: child exited with code 2")
    assert "Traceback" not in out


def test_compare_measures_a_whole_network_case_in_a_child_with_the_same_exact_counts():
    from convbench.run.compare import ComparePlan
    from convbench.run.config import CompareConfig
    from convbench.zoo.comparisons import get_cases
    case = next(c for c in get_cases("factorization") if c.whole_network)
    plan = ComparePlan(CompareConfig(name="factorization", pairs=6, warmup=0, isolate=True))
    isolated = [r.values for r in plan.isolated_rows(case, lambda event: None)]
    assert [r["status"] for r in isolated] == ["ok", "ok"] and all(r["measured_ratio"] > 0 for r in isolated)
    counted = {r.values["variant"]: (r.values["params"], r.values["macs"], r.values["saved_act_bytes"])
               for r in plan.measure(case, None, lambda event: None)}
    assert {r["variant"]: (r["params"], r["macs"], r["saved_act_bytes"]) for r in isolated} == counted
    assert counted["googlenet 5x5"][:2] == (7005832, 1582671872)


def test_train_streams_steps_from_an_isolated_run(user_nets):
    from convbench.run.config import TrainConfig
    from convbench.run.train import run_train
    steps: list[dict] = []
    run = run_train(TrainConfig(arch=f"{user_nets}:plain", steps=4, batch_size=4, input_size=16, isolate=True),
                    on_step=steps.append)
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    summary = run.rows[0]
    assert summary["status"] == "ok" and summary["steps"] == 4 and summary["first_loss"] == steps[0]["loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_sweep_in_one_process_gives_back_all_its_memory():
    config = ProfileConfig(arch="resnet18,googlenet,resnet50", device="cuda", dtype="bf16", batch_sizes=(1, 16),
                           iters=5, warmup=2, isolate=False)
    # Warm first: cuBLAS keeps its workspace (32 MiB on Hopper) in the allocator for the life of the process, and
    # that is the process's, not the sweep's.
    run_profile(config)
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    run = run_profile(config)
    assert all(r["latency_ms_p50"] > 0 and r["peak_mem_train_bytes"] > 0 for r in run.rows)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == start

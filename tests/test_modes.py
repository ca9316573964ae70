"""Issue 11's CPU half: modes and their refusal without CUDA, the mode column, device-time columns that stay
empty on the CPU, and compare verdicts that know a launch-bound row (driven with synthetic figures)."""
from __future__ import annotations

import math

import pytest
import torch

from cli_helpers import run
from convbench.run.verdicts import verdict
from convbench.run.config import ProfileConfig
from convbench.errors import UserError
from convbench.measure.device_time import busy_columns
from convbench.measure import memory
from convbench.run import modes
from convbench.run.modes import modes_from_flags, prepare
from convbench.run.profile import run_profile

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [["profile", "--arch", "resnet18", "--cuda-graphs"],
                                  ["profile", "--arch", "resnet18", "--compile", "--cuda-graphs"],
                                  ["profile", "--arch", "resnet18", "--mode", "eager,graphs"],
                                  ["compare", "reduction", "--cuda-graphs"]])
def test_cuda_graphs_without_cuda_is_one_line(capsys, tmp_path, argv):
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "capture CUDA graphs, which need --device cuda" in err


def test_flags_map_to_modes():
    assert modes_from_flags(None, False, False) == ("eager",)
    assert modes_from_flags(None, True, False) == ("compile",)
    assert modes_from_flags(None, False, True) == ("graphs",)
    assert modes_from_flags(None, True, True) == ("compile+graphs",)
    assert modes_from_flags("eager, graphs,compile", False, False) == ("eager", "graphs", "compile")


def test_unknown_mode_and_several_modes_in_compare_are_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "resnet18", "--mode", "eager,warp", "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == "error: unknown mode warp; choose from eager, compile, graphs, compile+graphs"
    code, out, err = run(capsys, "compare", "reduction", "--mode", "eager,compile", "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == "error: compare runs one mode at a time; run it once per mode"


def test_graphs_need_cuda_even_from_python():
    with pytest.raises(UserError, match="needs CUDA"):
        prepare(torch.nn.Linear(2, 2), torch.zeros(1, 2), "graphs", torch.device("cpu"))


def test_one_row_per_mode_side_by_side_and_no_device_columns_on_the_cpu():
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:tiny", batch_sizes=(1, 2), input_size=16, iters=3,
                                     warmup=1, cpu_memory=False, isolate=False, modes=("eager", "compile"))).rows
    assert [(r["batch_size"], r["mode"], r["compile"]) for r in rows] == [
        (1, "eager", False), (1, "compile", True), (2, "eager", False), (2, "compile", True)]
    assert all(r["latency_ms_p50"] > 0 for r in rows)
    assert all(r.get("device_ms") is None and r.get("gpu_busy") is None for r in rows)
    assert all("device" not in (r["error"] or "") and "gpu" not in (r["error"] or "").lower() for r in rows)
    assert rows[0]["saved_bytes"] == rows[1]["saved_bytes"]  # counted once per batch size, shared by its modes


def test_device_time_columns():
    assert busy_columns(0.99, 4.4) == {"device_ms": 0.99, "gpu_busy": 0.99 / 4.4, "launch_bound": True}
    assert busy_columns(19.65, 20.0)["launch_bound"] is False
    assert busy_columns(None, 4.4) == {} and busy_columns(1.0, None) == {}


def test_a_launch_bound_verdict_judges_on_device_time():
    realized, text = verdict(0.72, 1.42, device_ratio=0.70, gpu_busy=0.23)
    assert realized == pytest.approx((1 - 0.70) / (1 - 0.72))
    assert text == ("launch-bound: GPU busy 23%; device-time ratio 0.70: 107% of the MAC saving realised "
                    "(0.70x device time for 0.72x MACs)")


def test_a_busy_gpu_and_the_cpu_are_judged_on_latency():
    assert verdict(0.72, 0.80, device_ratio=0.70, gpu_busy=0.97)[1] == \
        "71% of the MAC saving realised (0.80x time for 0.72x MACs)"
    realized, text = verdict(0.72, 1.42)
    assert text == "no speed-up: 1.42x the time for 0.72x the MACs" and realized < 0
    assert math.isnan(verdict(0.72, float("nan"))[0])


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_graphs_replay_matches_eager_and_carries_device_time():
    rows = run_profile(ProfileConfig(arch="resnet18", device="cuda", batch_sizes=(1,), iters=20, warmup=3,
                                     modes=("eager", "graphs"), isolate=False)).rows
    assert [r["mode"] for r in rows] == ["eager", "graphs"]
    assert all(r["device_ms"] > 0 and 0 < r["gpu_busy"] for r in rows)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).cuda().eval()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    with torch.inference_mode():
        assert torch.allclose(prepare(model, x, "graphs", torch.device("cuda"))(), model(x))


def test_compare_runs_a_compiled_mode_and_says_so_in_every_row():
    from convbench.run.compare import compare
    frame = compare("reduction", shape=(8, 9, 9), pairs=6, warmup=1, mode="compile")
    assert list(frame["mode"]) == ["compile"] * 3 and list(frame["compile"]) == [True] * 3
    assert (frame["measured_ratio"] > 0).all() and frame["device_ratio"].isna().all()


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


def test_compile_mode_compiles_each_batch_size_afresh_with_static_shapes(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:tiny", batch_sizes=(1, 2), input_size=16, iters=2,
                                     warmup=0, cpu_memory=False, isolate=False, modes=("compile",))).rows
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert calls == ["reset", {"dynamic": False, "mode": None}] * 2

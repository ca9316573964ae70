"""Issue 21: measured ceilings, a share of peak in every timed row, MFU in training. The ceiling's arithmetic and
its kernel choice run on stubbed timings; no timing is asserted."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cli_helpers import run
from convbench.measure import ceiling, roofline
from convbench.run.config import ProfileConfig
from convbench.run.profile import run_profile

pytestmark = pytest.mark.real_ceiling  # these measure (stubbed or real) ceilings themselves


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    # A quiet machine, whatever runs beside: these are about a ceiling's arithmetic and its cache, not the load.
    monkeypatch.setattr(ceiling.host_load, "window_columns", lambda start: {"host_busy": 0.0, "busy": False})
    ceiling.forget()
    yield tmp_path / "cache"
    ceiling.forget()


class _Marked:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> None:
        pass


def _stub_kernels(monkeypatch, compute_ms: dict[str, float], bandwidth_ms: dict[str, float]):
    monkeypatch.setattr(ceiling, "compute_kernels", lambda device, dtype: {
        name: (1e12, lambda name=name: _Marked(name)) for name in compute_ms})
    monkeypatch.setattr(ceiling, "bandwidth_kernels", lambda device: {
        name: (1e9, lambda name=name: _Marked(name)) for name in bandwidth_ms})
    table = {**compute_ms, **bandwidth_ms}
    return lambda fn, device: table[fn.name]


def test_the_peak_is_the_best_kernel_and_names_it(monkeypatch, cache):
    timer = _stub_kernels(monkeypatch, {"GEMM": 5000.0, "conv NCHW": 3000.0, "conv channels_last": 2000.0},
                          {"copy": 10.0, "sum": 8.0})
    measured = ceiling.measure("cpu", ("fp32",), timer)
    # 1e12 FLOPs in 2 s: 0.5 TFLOP/s; 1e9 bytes in 8 ms: 125 GB/s
    assert measured.compute["fp32"].kernel == "conv channels_last"
    assert measured.compute["fp32"].candidates == pytest.approx({"GEMM": 0.2, "conv NCHW": 1 / 3, "conv channels_last": 0.5},
                                                                rel=1e-12)
    assert measured.bandwidth.kernel == "sum" and measured.bandwidth.value == pytest.approx(125.0, rel=1e-12)


def test_the_cache_is_reused_keyed_by_the_machine_and_a_corrupt_one_is_measured_again(monkeypatch, cache):
    calls = []

    def timer(fn, device):
        calls.append(fn.name)
        return 1000.0
    _stub_kernels(monkeypatch, {"GEMM": 0, "conv": 0}, {"copy": 0})
    first, fresh = ceiling.obtain("cpu", ("fp32",), timer=timer)
    assert fresh and len(calls) == 3
    again, fresh = ceiling.obtain("cpu", ("fp32",), timer=timer)
    assert not fresh and len(calls) == 3 and again.key == first.key
    with monkeypatch.context() as m:
        m.setattr(ceiling, "cpu_name", lambda: "Another CPU")
        assert ceiling.cache_key(ceiling.machine(torch.device("cpu"))) != first.key
    with monkeypatch.context() as m:
        m.setattr(torch, "get_num_threads", lambda: 7)
        assert ceiling.cache_key(ceiling.machine(torch.device("cpu"))) != first.key
    (cache / "ceilings" / f"{first.key}.json").write_text("{not json")
    notes = []
    _, fresh = ceiling.obtain("cpu", ("fp32",), timer=timer, on_note=notes.append)
    assert fresh and len(notes) == 1 and "could not be used" in notes[0] and "measured again" in notes[0]
    stale = json.loads((cache / "ceilings" / f"{first.key}.json").read_text())
    stale["format"] = 0
    (cache / "ceilings" / f"{first.key}.json").write_text(json.dumps(stale))
    assert ceiling.obtain("cpu", ("fp32",), timer=timer)[1] is True


def test_a_row_s_share_of_peak_is_exactly_achieved_over_the_ceiling(monkeypatch, cache):
    _stub_kernels(monkeypatch, {"GEMM": 0}, {"copy": 0})
    peak, _ = ceiling.obtain("cpu", ("fp32",), timer=lambda fn, device: 1000.0)  # 1 TFLOP/s, 1 GB/s
    rows = run_profile(ProfileConfig(arch="resnet18,alexnet", input_size=64, iters=2, warmup=0, cpu_memory=False)).rows
    for r in rows:
        assert r["pct_peak"] == r["achieved_tflops"] / peak.compute["fp32"].value
        expected = roofline.intensity(r["macs"], 1, r["param_bytes"], r["acts"], "fp32")
        assert r["intensity"] == expected
        # the ridge: 1 TFLOP/s over 1 GB/s = 1000 FLOPs per byte, far above any of these
        assert r["bound"] == "memory"


def test_training_flops_are_counted_exactly():
    from convbench.measure.complexity import training_macs
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4)).to("meta")
    # forward: conv1 64*8*27 = 13,824; conv2 64*8*72 = 36,864; fc 32. backward: conv1's grad_weight only (its input
    # needs no gradient) 13,824; conv2 grad_input + grad_weight 73,728; fc grad_input + grad_weight 64
    assert training_macs(net, (2, 3, 8, 8)) == 13824 + 36864 + 32 + 13824 + 73728 + 64 == 138336
    from torch.utils.flop_counter import FlopCounterMode
    from convbench.zoo.specs import resolve_models
    spec = resolve_models("resnet18", 64)[0]
    real = spec.build("cpu").train()
    with FlopCounterMode(display=False) as counter:
        real(torch.zeros(2, 3, 64, 64)).sum().backward()
    assert training_macs(spec.build("meta"), (2, 3, 64, 64)) == counter.get_total_flops() // 2 // 2 == 436039680


def test_train_rows_carry_training_flops_and_mfu(monkeypatch, cache):
    from convbench.run.config import TrainConfig
    from convbench.run.train import run_train
    _stub_kernels(monkeypatch, {"GEMM": 0}, {"copy": 0})
    peak, _ = ceiling.obtain("cpu", ("fp32",), timer=lambda fn, device: 1000.0)
    row = run_train(TrainConfig(arch="resnet18", steps=4, batch_size=2, input_size=32)).rows[0]
    # resnet18 at 32 px trains 110,161,920 MACs per image with 1000 classes; the synthetic data has 10, and the
    # classifier's forward, grad_input and grad_weight each lose 512 x 990 MACs
    assert row["train_flops_per_image"] == 2 * (110161920 - 3 * 512 * 990) == 217282560
    assert row["mfu"] == row["train_flops_per_image"] * row["images_per_s"] / (peak.compute["fp32"].value * 1e12)


def test_a_verdict_says_when_a_variant_runs_at_a_lower_share_of_peak():
    from convbench.run.verdicts import peak_clause
    variant = {"counted_ratio": 1 / 32, "pct_peak": 0.012}
    assert peak_clause(variant, {"pct_peak": 0.35}) == "; it runs at 1.2% of peak, the baseline at 35%"
    assert peak_clause({**variant, "pct_peak": 0.34}, {"pct_peak": 0.35}) == ""   # about the same share
    assert peak_clause({"counted_ratio": 1.0, "pct_peak": 0.01}, {"pct_peak": 0.35}) == ""  # no saving to explain


def test_selfcheck_within_peak_fails_when_a_row_beats_the_ceiling(monkeypatch, cache):
    from convbench.selfcheck import battery
    timer = _stub_kernels(monkeypatch, {"GEMM": 1e8}, {"copy": 10.0})
    ceiling.obtain("cpu", ("fp32",), timer=timer)  # a "peak" of 10 MFLOP/s: every row beats it
    check = battery.within_peak(battery.Context(torch.device("cpu"), quick=True))
    assert check.status == "fail" and check.note.startswith("above the peak: resnet18 ")


@pytest.mark.parametrize("argv, said", [(["--dtype", "fp16"], "fp16 is for CUDA; on the CPU measure fp32 or bf16"),
                                        (["--dtype", "fp64"], "unknown dtype 'fp64'"),
                                        (["--device", "cuda"], "--device cuda asked for, but torch sees no CUDA device")])
def test_bad_input_is_one_line(capsys, argv, said):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, out, err = run(capsys, "ceiling", *argv)
    assert code == 2 and out == "" and err.strip().startswith(f"error: {said}")


def test_ceiling_command_measures_then_reuses(capsys, cache, tmp_path):
    code, out, err = run(capsys, "ceiling", "--dtype", "fp32", "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "fp32 compute" in out and "memory bandwidth" in out and "measured now in" in out
    saved = json.loads((tmp_path / "c" / "ceiling.json").read_text())
    assert saved["compute"]["fp32"]["kernel"] in saved["compute"]["fp32"]["candidates"]
    code, out, err = run(capsys, "ceiling", "--dtype", "fp32")
    assert code == 0 and "from this machine's cache" in out

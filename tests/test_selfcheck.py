"""`convbench selfcheck`: every check made to fail on purpose, the battery going on past a check that raises,
and its bad input. The real CPU battery runs in CI (.ci/run: selfcheck --quick)."""
from __future__ import annotations

import time

import pytest
import torch

from cli_helpers import run
from convbench.measure import clock
from convbench.selfcheck.battery import CHECKS, Context, run_selfcheck
from convbench.selfcheck import battery
from convbench.selfcheck import machine as probes


def _ctx(**kw) -> Context:
    return Context(torch.device("cpu"), quick=True, **kw)


def twice_as_slow(fn, device, warmup, iters, min_time):
    return [2 * v for v in clock.samples(fn, device, warmup, iters, min_time)]


def _one(name: str, ctx: Context):
    result = run_selfcheck("cpu", True, [name], context=ctx)
    assert [c.name for c in result.checks] == [name]
    return result.checks[0]


def test_machine_warns_with_the_fix(monkeypatch):
    real = probes._read
    monkeypatch.setattr(probes, "_read", lambda path: "powersave" if path.endswith("scaling_governor") else real(path))
    check = _one("machine", _ctx())
    assert check.status == "warn" and "governor powersave" in check.figure
    assert "fix: sudo cpupower frequency-set -g performance" in check.note


def test_timer_fidelity_fails_a_timer_that_reads_twice_the_time(monkeypatch):
    # A forward that sleeps takes the same time however busy the machine is: the ratio is the timer's alone.
    monkeypatch.setattr(battery, "_fidelity_workload", lambda ctx: (lambda: time.sleep(0.003), "a 3 ms sleep"))
    check = _one("timer_fidelity", _ctx(timer=twice_as_slow))
    assert check.status == "fail" and check.tolerance == "1.00 +- 0.10"
    assert 1.7 < float(check.figure.split()[0]) < 2.3


def test_timer_truth_fails_a_timer_that_reads_twice_the_time():
    # The timer reads 20 ms for the battery's 10 ms sleep, whatever the machine does meanwhile.
    check = _one("timer_truth", _ctx(timer=lambda fn, device, warmup, iters, min_time: [20.0] * iters))
    assert check.status == "fail" and check.figure.startswith("2.000 (20.00 ms for a 10 ms sleep)")


def test_nothing_held_fails_a_sweep_that_keeps_its_model():
    kept = []

    def leaky_sweep(ctx):
        kept.append(torch.nn.Linear(4, 4))  # two parameter tensors left alive per sweep
    check = _one("nothing_held", _ctx(sweep=leaky_sweep))
    assert check.status == "fail" and check.figure.startswith("+2 live tensors")


def test_counts_agree_fails_a_count_off_by_one():
    counts = {"dispatch_macs": 100, "fvcore_macs": 100, "flop_counter_macs": 101, "saved_meta": 8, "saved_device": 8}
    check = _one("counts_agree", _ctx(counts=lambda ctx: counts))
    assert check.status == "fail" and "dispatch 100, FlopCounterMode/2 101, fvcore 100" in check.figure


def test_modes_fails_a_mode_whose_output_differs(monkeypatch):
    real = battery.prepare

    def off_by_one(model, x, mode, device, dtype=None, warmup=3):
        forward = real(model, x, "eager", device, dtype, warmup)
        return (lambda: forward() + 1) if mode == "compile" else forward
    monkeypatch.setattr(battery, "prepare", off_by_one)
    check = battery.modes(Context(torch.device("cpu"), quick=False))  # --quick leaves the compiled modes out
    assert check.status == "fail" and check.note.startswith("compile differs from eager by ")


def test_isolation_fails_when_a_dead_child_is_not_an_error_row(monkeypatch):
    class Run:
        rows = [{"model": "x:killer", "batch_size": 2, "status": "ok", "error": None},
                {"model": "x:tiny", "batch_size": 1, "latency_ms_p50": 1.0}]
    monkeypatch.setattr(battery, "run_profile", lambda config: Run())
    check = _one("isolation", _ctx())
    assert check.status == "fail" and "killer b2: ok" in check.figure and "timed at 1 of 2" in check.figure


def test_training_fails_a_loss_that_does_not_go_down(monkeypatch):
    def rising(side, config, data, on_step, *args):
        for step in range(6):
            on_step({"loss": 1.0 + step})
    monkeypatch.setattr(battery, "train_side", rising)
    check = _one("training", _ctx())
    assert check.status == "fail" and "fp32 1.000->6.000" in check.figure


def test_a_check_that_raises_is_a_fail_and_the_battery_goes_on(monkeypatch):
    def broken(ctx):
        raise RuntimeError("probe exploded")
    monkeypatch.setitem(CHECKS, "timer_truth", broken)
    result = run_selfcheck("cpu", True, ["timer_truth", "counts_agree"])
    assert [(c.name, c.status) for c in result.checks] == [("timer_truth", "fail"), ("counts_agree", "pass")]
    assert result.checks[0].note == "RuntimeError: probe exploded"


def test_cli_writes_json_and_md_and_exits_nonzero_on_a_failure(capsys, tmp_path, monkeypatch):
    # Whether the timer reads true depends on the host's load (test_timer_truth_* hold the check); here: what the CLI writes.
    monkeypatch.setitem(CHECKS, "timer_truth", lambda ctx: battery.Check("timer_truth", "pass", "1.000", "0.99-1.05"))
    code, out, err = run(capsys, "selfcheck", "--quick", "--check", "counts_agree,timer_truth", "--out", str(tmp_path / "sc"))
    assert code == 0, out
    assert "2 checks in" in out and "2 pass" in out
    import json
    saved = json.loads((tmp_path / "sc" / "selfcheck.json").read_text())
    assert [c["name"] for c in saved["checks"]] == ["timer_truth", "counts_agree"] and saved["environment"]["cpu_count"]
    assert (tmp_path / "sc" / "selfcheck.md").read_text().startswith("# convbench selfcheck on cpu")
    monkeypatch.setitem(CHECKS, "counts_agree", lambda ctx: battery.Check("counts_agree", "fail", "1 != 2", "equal"))
    code, out, err = run(capsys, "selfcheck", "--check", "counts_agree", "--out", str(tmp_path / "sc"), "--format", "json")
    assert code == 1 and json.loads(out)["checks"][0]["status"] == "fail"


@pytest.mark.parametrize("argv, needle", [
    (["--check", "nosuch"], "unknown check nosuch; choose from machine, timer_fidelity"),
    (["--device", "cuda"], "--device cuda asked for, but torch sees no CUDA device"),
    (["--format", "xml"], "unknown --format 'xml'"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, needle):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, out, err = run(capsys, "selfcheck", *argv, "--out", str(tmp_path / "sc"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err


def test_out_that_is_a_file_is_one_line(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, out, err = run(capsys, "selfcheck", "--check", "counts_agree", "--out", str(target))
    assert code == 2 and err.startswith("error: cannot write to output folder") and len(err.strip().splitlines()) == 1


def test_others_share_is_the_machine_time_this_process_did_not_use(monkeypatch):
    from convbench.measure import host_load
    monkeypatch.setattr(host_load, "_jiffies_per_second", lambda: 100)
    a = host_load.Snapshot(wall=10.0, busy=1000, steal=0, own=400, cpus=2)
    b = host_load.Snapshot(wall=11.0, busy=1150, steal=10, own=450, cpus=2)  # 200 jiffies of capacity in 1 s
    assert host_load.others_share(a, b) == (150 - 50 + 10) / 200
    assert host_load.load_columns(a, b) == {"host_busy": 0.55, "busy": True}
    assert host_load.load_columns(None, b) == {}
    # 3 ms of a 2-core machine is 0.6 jiffies of capacity: one tick of a neighbour would read as 100% busy
    short = host_load.Snapshot(wall=10.003, busy=1001, steal=0, own=400, cpus=2)
    assert host_load.others_share(a, short) is None and host_load.load_columns(a, short) == {}


def test_a_row_timed_beside_a_spinning_neighbour_is_busy_and_the_cli_says_so(capsys, tmp_path):
    import subprocess
    import sys
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        code, out, err = run(capsys, "profile", "--arch", "resnet18", "--input-size", "64", "--min-time", "1",
                             "--out", str(tmp_path / "busy"))
    finally:
        hog.kill()
    import pandas as pd
    row = pd.read_csv(tmp_path / "busy" / "profile.csv").iloc[0]
    assert code == 0 and bool(row["busy"]) and row["host_busy"] > 0.10
    assert "warning: 1 row timed while other processes used up to" in out and "resnet18 b1" in out


def test_selfcheck_counts_agree_without_fvcore(monkeypatch):
    import importlib.util
    from convbench.selfcheck import battery
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fvcore" else real(name, *a))
    check = battery.counts_agree(battery.Context(torch.device("cpu"), quick=True))
    assert check.status == "pass" and "fvcore" not in check.figure and "fvcore is not installed" in check.note
    assert "dispatch 148,557,824, FlopCounterMode/2 148,557,824" in check.figure


def test_the_instruction_check_requires_two_equal_counts(monkeypatch):
    from convbench.selfcheck import battery
    monkeypatch.setattr(battery.shutil, "which", lambda name: "/usr/bin/valgrind")
    ctx = battery.Context(torch.device("cpu"))
    figures = iter([1000, 1000, 1000, 1001])
    assert battery.instructions_repeat(ctx, count=lambda: next(figures)).status == "pass"
    check = battery.instructions_repeat(ctx, count=lambda: next(figures))
    assert check.status == "fail" and check.tolerance == "equal, exactly"
    monkeypatch.setattr(battery.shutil, "which", lambda name: None)
    assert battery.instructions_repeat(ctx).status == "skip"


def test_a_timed_check_that_fails_once_is_measured_again_and_says_so(monkeypatch):
    # A burst of other work: the first measurement reads twice the time, the second is true.
    readings = iter([[20.0] * 10, [10.1] * 10])
    check = _one("timer_truth", _ctx(timer=lambda fn, device, warmup, iters, min_time: next(readings)))
    assert check.status == "pass" and check.figure.startswith("1.010")
    assert check.note == "measured twice, first fail: 2.000 (20.00 ms for a 10 ms sleep)"
    # A check that does not hold a timing is not repeated: a count off by one fails at once.
    calls = []
    monkeypatch.setitem(CHECKS, "counts_agree", lambda ctx: calls.append(1) or battery.Check("counts_agree", "fail"))
    assert _one("counts_agree", _ctx()).status == "fail" and calls == [1]

"""Every failure, wherever it happens, becomes the same kind of row: its status, its error in words, and the context
columns a measured row has (convbench.run.rows). The sweep goes on after each."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from convbench.results.schema import CONTEXT_COLUMNS
from convbench.run import ddp, rows
from convbench.run.config import CompareConfig, ProfileConfig, TrainConfig
from convbench.run.compare import run_compare
from convbench.run.profile import run_profile
from convbench.run.train import run_train
from convbench.zoo import registry

# What only a process that measured can say; a merge-filled row has the rest from its shard's env.json.
LIVE = ("device", "device_name", "dtype", "channels_last", "compile", "cudnn_benchmark", "threads", "pid", "torch",
        "convbench", "git_commit", "timestamp")


@pytest.fixture()
def broken(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text(textwrap.dedent('''
        import sys
        import torch
        from torch import nn

        class Exits(nn.Module):
            def forward(self, x):
                if x.device.type != "meta":
                    sys.exit(3)
                return x.mean((2, 3))

        def raises(): raise RuntimeError("no weights here")
        def exits_in_builder(): sys.exit(3)
        def exits_in_forward(): return Exits()
        def tiny(): return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        def tiny2(): return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "broken"
    sys.modules.pop("broken", None)


def _has_context(row: dict) -> None:
    missing = [c for c in LIVE if row.get(c) in (None, "")]
    assert not missing, (row["error"], missing)
    assert set(CONTEXT_COLUMNS) <= set(row)


def test_profile_failures_of_every_kind_are_rows_with_their_context(broken):
    config = ProfileConfig(arch=f"{broken}:raises,{broken}:exits_in_builder,{broken}:exits_in_forward,{broken}:tiny",
                           batch_sizes=(1,), input_size=16, iters=1, warmup=0, cpu_memory=False, ceiling=False)
    found = {r["model"]: r for r in run_profile(config).rows}
    assert found[f"{broken}:raises"]["error"] == "building the model failed: RuntimeError: no weights here"
    assert found[f"{broken}:exits_in_builder"]["error"] == "building the model failed: the builder called sys.exit(3)"
    assert found[f"{broken}:exits_in_forward"]["error"] == "timing: the model called sys.exit(3)"
    assert found[f"{broken}:tiny"]["status"] == "ok"  # the sweep went on after each
    for row in found.values():
        _has_context(row)


def test_an_isolated_child_that_dies_leaves_rows_with_their_context(broken):
    config = ProfileConfig(arch="convbench.selfcheck.fixtures:killer", batch_sizes=(1, 2), input_size=16, iters=1, warmup=0,
                           cpu_memory=False, isolate=True, ceiling=False)
    found = run_profile(config).rows
    assert [r["status"] for r in found] == ["ok", "error"]
    assert found[1]["error"].startswith("child killed by SIGKILL")
    _has_context(found[1])


def test_a_failed_ddp_launch_is_an_error_row_with_context_and_the_sweep_goes_on(monkeypatch, tmp_path, broken):
    real = ddp.children.popen

    def failing(cmd, **kwargs):  # torchrun that dies at once, as a launch with a bad rendezvous does
        return real([sys.executable, "-c", "import sys; sys.stderr.write('rendezvous failed\\n'); sys.exit(1)"], **kwargs)
    monkeypatch.setattr(ddp.children, "popen", failing)
    run = run_train(TrainConfig(arch=f"{broken}:tiny,{broken}:tiny2", steps=2, batch_size=2, input_size=16,
                                nproc_per_node=2, out=tmp_path / "t"))
    statuses = [(r["run"], r["nproc"], r["status"]) for r in run.rows]
    assert statuses == [(f"{broken}:tiny", 1, "ok"), (f"{broken}:tiny", 2, "error"),
                        (f"{broken}:tiny2", 1, "ok"), (f"{broken}:tiny2", 2, "error")]
    assert run.rows[1]["error"] == "DDP launch failed: rendezvous failed"
    _has_context(run.rows[1])


def test_a_compare_case_that_fails_is_rows_with_their_context(monkeypatch):
    from convbench.zoo import comparisons
    real = comparisons.get_cases

    def broken_cases(name, *args):
        case = real("reduction")[0]
        bad = comparisons.Variant("raises", lambda ch: (_ for _ in ()).throw(RuntimeError("no such block")))
        return [comparisons.CompareCase(case.comparison, case.name, case.claim, (8, 8, 8), (case.variants[0], bad))]
    monkeypatch.setattr("convbench.run.compare.get_cases", broken_cases)
    found = run_compare(CompareConfig(name="reduction", pairs=6, warmup=0)).rows
    assert [r["status"] for r in found] == ["error", "error"]
    assert found[1]["error"] == "counting failed: RuntimeError: no such block"
    for row in found:
        _has_context(row)


def test_a_failure_reads_the_same_from_the_count_cache_and_says_it_came_from_there(monkeypatch):
    def broken_model():
        raise RuntimeError("no weights here")
    registry.register_model("broken_for_test", broken_model, family="test")
    try:
        config = ProfileConfig(arch="broken_for_test", metrics="static")
        cold = run_profile(config).rows[0]["error"]
        cached = run_profile(config).rows[0]["error"]
    finally:
        registry._REGISTRY.pop("broken_for_test")
    assert cold == "building the model failed: RuntimeError: no weights here"
    assert cached.startswith(cold)


def test_merge_fills_what_a_dead_shard_owed_with_the_context_its_env_recorded():
    env = {"torch": "2.13.0", "convbench": "0.1.0", "git_commit": "abc", "sweep": {"device": "cpu"}}
    row = rows.not_run({"model": "m", "batch_size": 1, "mode": "eager"}, "not run: shard 2 of 2 ended early", env)
    assert row["status"] == "error" and row["device"] == "cpu" and row["torch"] == "2.13.0" and row["timestamp"]


def test_the_cli_exits_1_with_a_row_for_each_failure_and_no_traceback(broken, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "convbench", "profile", "--arch",
                           f"{broken}:exits_in_builder,alexnet", "--metrics", "static", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "alexnet" in proc.stdout

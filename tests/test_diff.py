"""`convbench diff`: two runs of a model stamped with 10 ms and 20 ms timings, same-work runs, exact counts, bad folders."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import convbench
from cli_helpers import run
from convbench.analysis.diff import bootstrap_ratio, diff


@pytest.fixture()
def sleepy(tmp_path, monkeypatch):
    (tmp_path / "sleepy.py").write_text(textwrap.dedent('''
        import os, time
        import torch
        from torch import nn

        class Sleepy(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, int(os.environ.get("SLEEPY_WIDTH", "4")), 3)
            def forward(self, x):
                if x.device.type != "meta" and not torch.jit.is_tracing():
                    time.sleep(float(os.environ.get("SLEEPY_MS", "10")) / 1000)
                return self.conv(x).mean((2, 3))

        def build():
            return Sleepy()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("sleepy", None)


def _run(folder: Path, monkeypatch, ms: int = 10, width: int = 4, dtype: str = "fp32") -> Path:
    """A real profile run whose timings are then set to `ms` with a fixed +-3% spread: diff's arithmetic is under
    test here, not this machine's timer (a loaded 2-core runner once read a 10 ms sleep as 15.9 ms)."""
    import pandas as pd
    monkeypatch.setenv("SLEEPY_MS", "0")
    monkeypatch.setenv("SLEEPY_WIDTH", str(width))
    convbench.profile("sleepy:build", dtype=dtype, out=folder, iters=15, warmup=1, input_size=16, cpu_memory=False,
                              isolate=False)
    spread = [1 + 0.03 * ((7 * i) % 15 - 7) / 7 for i in range(15)]
    name = "samples.parquet" if (folder / "samples.parquet").exists() else "samples.csv"
    samples = pd.read_parquet(folder / name) if name.endswith("parquet") else pd.read_csv(folder / name)
    samples["latency_ms"] = [ms * spread[i % 15] for i in samples["iteration"]]
    samples.to_parquet(folder / name) if name.endswith("parquet") else samples.to_csv(folder / name, index=False)
    rows = pd.read_csv(folder / "profile.csv")
    rows["latency_ms_p50"] = float(ms)
    rows.to_csv(folder / "profile.csv", index=False)
    return folder


def test_twice_the_sleep_is_a_significant_2x_and_fails_the_threshold(sleepy, monkeypatch, capsys):
    old, new = _run(sleepy / "a", monkeypatch, 10), _run(sleepy / "b", monkeypatch, 20)
    result = diff(old, new)
    row = result.rows.iloc[0]
    assert row["model"] == "sleepy:build" and 1.7 < row["ratio"] < 2.4 and row["ci_low"] > 1 and row["mark"] == "*"
    assert result.exact.empty and result.added.empty and result.removed.empty and not result.notes
    code, out, err = run(capsys, "diff", str(old), str(new), "--fail-above", "25%")
    assert code == 1 and err == ""
    assert [line for line in out.splitlines() if line.startswith("SLOWER")] == [
        line for line in out.splitlines() if line.startswith("SLOWER sleepy:build, 1, ")]
    assert "geometric mean of new/old over 1 row: " in out


def test_the_same_work_twice_passes_the_threshold(sleepy, monkeypatch, capsys):
    old, new = _run(sleepy / "a", monkeypatch, 10), _run(sleepy / "b", monkeypatch, 10)
    code, out, err = run(capsys, "diff", str(old), str(new), "--fail-above", "25%")
    assert code == 0, out
    assert "SLOWER" not in out


def test_a_changed_mac_count_is_listed_exactly(sleepy, monkeypatch, capsys):
    old, new = _run(sleepy / "a", monkeypatch, width=4), _run(sleepy / "b", monkeypatch, width=8)
    exact = diff(old, new).exact.set_index("column")
    # conv 3->4 (then 3->8), 3x3, on 16x16 without padding: 14*14 outputs per channel, 27 MACs each
    assert exact.loc["macs", ["old", "new", "difference"]].tolist() == [21168, 42336, 21168]
    assert exact.loc["params", ["old", "new", "difference"]].tolist() == [112, 224, 112]
    code, out, err = run(capsys, "diff", str(old), str(new), "--format", "md")
    assert code == 0 and "  sleepy:build, 1, 16, fp32, False, eager, " in out and "macs 21,168 -> 42,336 (+21,168)" in out
    assert out.splitlines()[0].startswith("**latency_ms_p50: ")


def test_old_folders_without_samples_diff_on_medians_and_say_so(sleepy, monkeypatch):
    old, new = _run(sleepy / "a", monkeypatch, 10), _run(sleepy / "b", monkeypatch, 10)
    for name in ("samples.parquet", "samples.csv"):
        (old / name).unlink(missing_ok=True)
    result = diff(old, new)
    assert result.rows.iloc[0]["mark"] == "" and result.notes == [f"no samples in {old}: ratios of medians, without intervals"]


def test_across_a_setting_on_purpose_with_on(sleepy, monkeypatch, capsys):
    old, new = _run(sleepy / "fp32", monkeypatch, dtype="fp32"), _run(sleepy / "bf16", monkeypatch, dtype="bf16")
    code, out, err = run(capsys, "diff", str(old), str(new))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no rows in common (dtype is fp32 in OLD but bf16 in NEW)" in err and "--on model,batch_size" in err
    code, out, err = run(capsys, "diff", str(old), str(new), "--on", "model,batch_size", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("model,batch_size,old,new,ratio")


def test_bad_folders_are_one_line(sleepy, monkeypatch, capsys, tmp_path):
    from convbench.run.compare import compare
    good = _run(sleepy / "a", monkeypatch)
    compare_run = tmp_path / "c"
    compare("reduction", shape=(8, 8, 8), pairs=6, warmup=0, out=compare_run)
    for argv, needle in (((str(tmp_path / "nowhere"), str(good)), "does not exist"),
                         ((str(good / "profile.csv"), str(good)), "is a file"),
                         ((str(good), str(tmp_path)), "holds no profile.csv or compare.csv"),
                         ((str(good), str(compare_run)), f"{compare_run} is a compare run and the other folder a profile run"),
                         ((str(good), str(good), "--metric", "nosuch"), "is not a column of both folders"),
                         ((str(good), str(good), "--format", "xml"), "unknown --format")):
        code, out, err = run(capsys, "diff", *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (argv, err)


def test_the_bootstrap_is_seeded_and_centred_on_the_ratio_of_medians():
    import numpy as np
    old, new = np.array([10.0, 10.5, 9.8, 10.1, 10.2]), np.array([20.0, 20.4, 19.9, 20.2, 20.1])
    assert bootstrap_ratio(old, new, 1) == bootstrap_ratio(old, new, 1)
    point, lo, hi = bootstrap_ratio(old, new, 1)
    assert point == 20.1 / 10.1 and lo <= point <= hi
    assert bootstrap_ratio(old, new, -1)[0] == 10.1 / 20.1


def test_report_of_two_folders_draws_the_ratios(sleepy, monkeypatch, capsys):
    old, new = _run(sleepy / "a", monkeypatch, 10), _run(sleepy / "b", monkeypatch, 20)
    code, out, err = run(capsys, "report", str(old), str(new))
    assert code == 0, err
    assert (new / "diff_run.png").stat().st_size > 0
    page = (new / "report.html").read_text()
    assert f"<h2>What changed: {old} -&gt; {new}</h2>" in page and f"<h2>{old} -&gt; {new}: every matched row</h2>" in page

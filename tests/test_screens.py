"""What profile, compare and train print: every figure whole at 80 columns (a column is shown whole or not at
all), marks for what cannot be taken at face value, and the notes under the tables. The frames are made up: the
layout is under test here, not a measurement."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from rich.console import Console

from cli_helpers import run
from convbench.cli import train_cmd
from convbench.cli.tables import print_compare, print_profile
from convbench.results.schema import COMPARE_COLUMNS, PROFILE_COLUMNS, TRAIN_COLUMNS

CONTEXT = {"device": "cpu", "device_name": "AMD EPYC 7B13 64-Core Processor", "dtype": "fp32", "mode": "eager"}


def _console(width: int) -> Console:
    return Console(width=width, record=True, force_terminal=False, color_system=None)


def _fits(text: str, width: int) -> None:
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width, max(text.splitlines(), key=len)
    assert "…" not in text


def _profile_frame() -> pd.DataFrame:
    rows = []
    for model, batch, p50, busy, share in (("resnet18", 1, 21.36, False, 0.43), ("inception_v3_noaux", 64, 1075.23, True, 0.39),
                                           ("googlenet", 2, 30.5, False, 1.86)):
        rows.append({**CONTEXT, "model": model, "family": "x", "batch_size": batch, "params": 11_689_512, "macs": 1_814_073_344,
                     "acts": 2_500_000, "saved_act_bytes": 41_000_000, "latency_ms_p50": p50, "latency_ms_iqr": 0.5,
                     "throughput_img_s": batch / p50 * 1e3, "achieved_tflops": 0.17, "pct_peak": share, "bound": "compute",
                     "peak_mem_train_bytes": 52_000_000, "peak_mem_infer_bytes": 900_000, "noisy": False, "busy": busy,
                     "host_busy": 0.45 if busy else 0.01, "status": "ok",
                     "note": "% peak 186% is above this machine's measured peak: ..." if share > 1 else None})
    return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))


@pytest.mark.parametrize("width", [80, 120])
def test_profile_rows_are_whole_and_marked(width):
    console = _console(width)
    frame = _profile_frame()
    print_profile(console, frame, "all", "runs/profile/x/profile.csv")
    out = console.export_text()
    _fits(out, width)
    lines = out.splitlines()
    for r in frame.itertuples():
        line = next(l for l in lines if l.startswith(r.model + " "))
        assert f"{r.latency_ms_p50:.2f}" in line and f"{r.throughput_img_s:,.1f}" in line
    assert "1075.23*" in out and "* after a time: measured while other processes" in out  # the busy row says so
    assert "186%?" in out and "? after % peak: above this machine's measured peak" in out  # and so does the impossible share


def test_compare_at_80_columns_keeps_figures_whole_and_verdicts_under_the_table():
    rows = []
    for variant, counted, measured, lo, hi, verdict in (
            ("dense", 1.0, 1.0, 1.0, 1.0, "baseline"),
            ("grouped G=32", 1 / 32, 0.446, 0.43, 0.46, "57% of the MAC saving realised (0.45x time for 0.03x MACs)"),
            ("(a) split-transform-merge", 1.0, 1.02, 0.95, 1.1, "no difference measurable at this precision: ...")):
        rows.append({**CONTEXT, "comparison": "grouped", "case": "dense vs grouped 3x3, G=32", "variant": variant,
                     "baseline": "dense", "claim": "G groups cost 1/G", "input_shape": "128x56x56", "batch_size": 1,
                     "params": 147_456, "macs": 462_422_016, "counted_ratio": counted, "measured_ratio": measured,
                     "ratio_ci_low": lo, "ratio_ci_high": hi, "latency_ms_p50": 4.07 * measured, "baseline_ms_p50": 4.07,
                     "verdict": verdict, "status": "ok", "busy": variant == "grouped G=32", "host_busy": 0.3})
    console = _console(80)
    print_compare(console, pd.DataFrame(rows, columns=list(COMPARE_COLUMNS)), "c/compare.csv")
    out = console.export_text()
    _fits(out, 80)
    assert "0.446*" in out and "* after a time" in out
    assert "\n  (a) split-transform-merge: no difference measurable" in out
    assert re.search(r"^grouped G=32\s.*0\.031\s+0\.446\*", out, re.M)


def test_train_at_80_columns_marks_an_impossible_scaling_and_keeps_names_whole(monkeypatch):
    console = _console(80)
    monkeypatch.setattr(train_cmd, "console", console)
    rows = [{**CONTEXT, "run": "googlenet 3x3+3x3", "model": "googlenet", "nproc": 1, "step_ms_p50": 189.5,
             "images_per_s": 42.2, "mfu": 0.19, "peak_mem_train_bytes": 300e6, "first_loss": 2.2, "final_loss": 3.5,
             "final_train_acc": 0.2, "heldout_acc": 0.1, "status": "ok", "busy": True},
            {**CONTEXT, "run": "googlenet 3x3+3x3", "model": "googlenet", "nproc": 2, "step_ms_p50": 150.0, "images_per_s": 53.3,
             "aggregate_images_per_s": 272.0, "scaling_efficiency": 3.22, "status": "ok",
             "note": "scaling efficiency 3.22 is impossible (above 1): the one-process run was slowed"}]
    train_cmd.print_train(pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)), 10)
    out = console.export_text()
    _fits(out, 80)
    assert "googlenet 3x3+3x3 x2" in out and "n/a!" in out and "3.22" not in out.split("note:")[0]
    assert "189.5*" in out and "note: scaling efficiency 3.22 is impossible" in out


def test_counts_use_units_that_fit_a_small_model(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:plain", "--metrics", "static", "--input-size", "16",
                         "--out", str(tmp_path / "s"))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(f"{user_nets}:plain"))
    # 3*8*9+8 conv, 64 matrix, 8*10+10 fc = 378 params; MACs 16*16*8*27 + 2*64 + 80 = 55,504
    assert row.split()[2:4] == ["378", "55.5k"]


def test_the_noisy_legend_only_follows_timed_rows(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(tmp_path / "s"))
    assert code == 0 and "~ after a latency" not in out

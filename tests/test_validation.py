"""One validation for every entry point: lists without empty items, options that conflict or do not apply refused
rather than ignored, a missing optional package named with its install, and a forward that reads its own values
counted on zeros (a partial row, latency measured) rather than an error."""
from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from cli_helpers import run


@pytest.mark.parametrize("argv, said", [
    (["profile", "--arch", "alexnet", "--mode", "eager,,compile"], "--mode has an empty item: 'eager,,compile'"),
    (["profile", "--arch", "alexnet", "--mode", ""], "--mode is empty"),
    (["profile", "--arch", "alexnet", "--format", "csv,,md"], "--format has an empty item: 'csv,,md'"),
    (["profile", "--arch", "alexnet,"], "--arch has an empty item: 'alexnet,'"),
    (["ceiling", "--dtype", "fp32,,bf16"], "--dtype has an empty item: 'fp32,,bf16'"),
    (["selfcheck", "--check", "machine,"], "--check has an empty item: 'machine,'"),
    (["profile", "--arch", "alexnet", "--compile", "--mode", "eager"],
     "--mode and --compile both choose how to run; keep --mode"),
    (["compare", "grouped", "--cuda-graphs", "--mode", "eager"], "--mode and --cuda-graphs both choose how to run"),
    (["compare", "factorization", "--claim", "0.5"],
     "--claim is for designs you name (compare a,b); the factorization comparison's claims come from its papers"),
    (["compare", "all", "--output", "0"], "--output is for designs you name (compare a,b)"),
    (["compare", "factorization", "--shape", "3,100000,100000"], "input 3x100000x100000 is beyond any real image"),
    (["profile", "--arch", "alexnet", "--input-size", "0"], "--input-size must be positive"),
    (["baseline", "--arch", "alexnet", "--input-shape", "0,224,224"], "--input-shape is C,H,W with three positive integers"),
    (["baseline", "--arch", "alexnet", "--input-shape", "3,-1,5"], "--input-shape is C,H,W with three positive integers"),
])
def test_bad_or_conflicting_options_are_one_line_before_anything_runs(capsys, tmp_path, argv, said):
    code, out, err = run(capsys, *argv, *(["--out", str(tmp_path / "o")] if argv[0] != "baseline" else
                                          ["--file", str(tmp_path / "b.json")]))
    assert code == 2 and err.startswith(f"error: {said}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_parquet_without_pyarrow_names_the_install(capsys, tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    code, _, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--format", "parquet",
                       "--out", str(tmp_path / "o"))
    assert code == 2 and err == ('error: --format parquet needs pyarrow, which is not installed: '
                                 'pip install "convbench[parquet]"\n')


@pytest.fixture()
def branching(tmp_path, monkeypatch):
    (tmp_path / "branchy.py").write_text(textwrap.dedent('''
        from torch import nn

        class Branches(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)

            def forward(self, x):
                h = self.a(x)
                if h.mean() > 0.1:  # reads its own values: no meta-device forward can decide this
                    h = self.b(h)
                return h.mean((2, 3))

        def build():
            return Branches()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "branchy:build"


def test_a_forward_that_reads_its_values_is_counted_on_zeros_and_timed(branching, capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", branching, "--input-size", "16", "--iters", "3", "--no-ceiling",
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    row = pd.read_csv(tmp_path / "o" / "profile.csv").iloc[0]
    # On zeros the branch is not taken: conv a alone, 3->8 3x3 over a 14x14 output.
    assert row.status == "partial" and row.macs == 14 * 14 * 8 * 3 * 9 and row.params == 8 * 3 * 9 + 8 + 8 * 8 * 9 + 8
    assert row.error.startswith("counts: counted on zero-filled weights and input on the CPU: the forward branches on "
                                "its own values (Tensor.item() cannot be called on meta tensors)")
    assert row.latency_ms_p50 > 0 and row.saved_bytes > 0
    code, out, err = run(capsys, "baseline", "--arch", branching, "--input-size", "16", "--update",
                         "--file", str(tmp_path / "b.json"))
    assert code == 0, err

"""Issue 22, a new user's first hour: every figure whole at 80 columns, runs that never erase each other, exit
codes a script can trust, forwards that return tuples or dicts, and the smaller rough edges."""
from __future__ import annotations

import re
import sys
import textwrap

import pandas as pd
import pytest

from cli_helpers import run
from convbench.results import folders as outdirs
from convbench.run.config import ProfileConfig
from convbench.run.profile import run_profile


@pytest.fixture()
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture()
def user_nets(tmp_path, monkeypatch):
    (tmp_path / "firsthour.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        import torch.nn.functional as F

        class Head(nn.Module):
            def __init__(self, kind):
                super().__init__()
                self.kind = kind
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.w = nn.Parameter(torch.randn(8, 8))
                self.fc = nn.Linear(8, 10)
            def forward(self, x):
                h = self.conv(x).mean((2, 3))
                h = torch.matmul(h, self.w)          # functional: no module of its own
                h = torch.matmul(h, self.w.t())
                logits = self.fc(h)
                if self.kind == "tuple":
                    return logits, logits * 0.5
                if self.kind == "dict":
                    return {"logits": logits, "features": h}
                if self.kind == "baddict":
                    return {"features": h}
                if self.kind == "str":
                    return "logits"
                return logits

        def plain(): return Head("tensor")
        def tuple_net(): return Head("tuple")
        def dict_net(): return Head("dict")
        def bad_dict(): return Head("baddict")
        def str_net(): return Head("str")
        def raises(): raise RuntimeError("no weights here")
        def forty_two(): return 42
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "firsthour"
    sys.modules.pop("firsthour", None)


NUMBER = re.compile(r"^-?[\d,]*\.?\d+(e[+-]?\d+)?[kMG%]?[~!]?$")


def _figures(cells: list[str]) -> list[str]:
    return [c for c in cells if NUMBER.match(c)]


def _assert_fits(out: str, width: int = 80) -> None:
    assert max(len(line.rstrip()) for line in out.splitlines()) <= width, max(out.splitlines(), key=len)
    assert "…" not in out


# 1. Every figure whole at 80 columns.

def test_profile_at_80_columns_shows_every_figure_of_its_columns_whole(narrow, capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "resnet18,googlenet,inception_v3_noaux", "-b", "1,2", "--iters", "2",
                         "--warmup", "0", "--input-size", "80", "--out", str(tmp_path / "p"))
    assert code == 0, err
    _assert_fits(out)
    frame = pd.read_csv(tmp_path / "p" / "profile.csv")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    for r, line in zip(frame.itertuples(), lines[header + 1:header + 1 + len(frame)]):
        cells = line.split()
        assert cells[0] == r.model and cells[1] == str(r.batch_size)
        assert f"{r.latency_ms_p50:.2f}" in [c.rstrip("~") for c in cells]  # the p50, whole
        assert f"{r.throughput_img_s:,.1f}" in cells


def test_compare_at_80_columns_keeps_figures_whole_and_verdicts_under_the_table(narrow, capsys, tmp_path):
    code, out, err = run(capsys, "compare", "grouped", "--pairs", "3", "--warmup", "0", "--shape", "64,8,8",
                         "--out", str(tmp_path / "c"))
    assert code == 0, err
    _assert_fits(out)
    frame = pd.read_csv(tmp_path / "c" / "compare.csv")
    for r in frame.itertuples():
        assert f"{r.counted_ratio:.3f}" in out and f"{r.measured_ratio:.3f}" in out
    assert "  (a) split-transform-merge: equal MACs (within 5%)" in out  # the verdict, under its table


def test_train_at_80_columns_keeps_run_names_whole_and_prints_window_means(narrow, capsys, tmp_path):
    code, out, err = run(capsys, "train", "--compare", "googlenet", "--steps", "4", "--batch-size", "2", "--input-size", "64",
                         "--log-every", "2", "--out", str(tmp_path / "t"))
    assert code == 0, err
    _assert_fits(out)
    assert re.search(r"^googlenet 3x3\+3x3  step 4/4  loss \d\.\d{3}  acc \d\.\d{3}  \(means, steps 3-4\)$", out, re.M)
    table = [line for line in out.splitlines() if line.startswith("googlenet ")][-2:]
    assert table[0].startswith("googlenet 5x5 ") and table[1].startswith("googlenet 3x3+3x3 ")


def test_counts_use_units_that_fit_a_small_model(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:plain", "--metrics", "static", "--input-size", "16",
                         "--out", str(tmp_path / "s"))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(f"{user_nets}:plain"))
    # 3*8*9+8 conv, 64 matrix, 8*10+10 fc = 378 params; MACs 16*16*8*27 + 2*64 + 80 = 55,504
    assert row.split()[2:4] == ["378", "55.5k"]


# 2. Runs never erase each other.

def test_default_runs_get_a_folder_each_and_latest_points_at_the_newest(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("reduction", "grouped"):
        code, out, err = run(capsys, "compare", name, "--pairs", "3", "--warmup", "0", "--shape", "64,8,8")
        assert code == 0, err
    folders = sorted(p for p in (tmp_path / "runs" / "compare").iterdir() if p.name != "latest")
    assert len(folders) == 2
    assert set(pd.read_csv(folders[0] / "compare.csv")["comparison"]) == {"reduction"}
    assert set(pd.read_csv(folders[1] / "compare.csv")["comparison"]) == {"grouped"}
    assert (tmp_path / "runs" / "compare" / "latest").resolve() == folders[1].resolve()


def test_an_explicit_out_that_holds_a_run_is_refused_unless_overwrite(capsys, tmp_path):
    out = tmp_path / "o"
    argv = ["profile", "--arch", "alexnet", "--metrics", "static", "--out", str(out)]
    assert run(capsys, *argv)[0] == 0
    before = (out / "profile.csv").read_text()
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert f"{out} already holds a run (profile.csv); pass --overwrite to replace it" in err
    assert (out / "profile.csv").read_text() == before
    assert run(capsys, *argv, "--overwrite")[0] == 0


def test_planned_folders_never_collide(tmp_path):
    first = outdirs.planned("profile", root=tmp_path)
    first.mkdir(parents=True)
    second = outdirs.planned("profile", root=tmp_path, now=None)
    assert second != first and second.parent == first.parent


# 3. Exit codes a script can trust; rows that say what failed.

def test_a_builder_that_raises_is_a_failed_sweep_with_a_row_that_says_so(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:raises,{user_nets}:forty_two,alexnet", "--metrics",
                         "static", "--out", str(tmp_path / "f"))
    assert code == 1
    errors = dict(pd.read_csv(tmp_path / "f" / "profile.csv")[["model", "error"]].values)
    assert errors[f"{user_nets}:raises"] == "building the model failed: RuntimeError: no weights here"
    assert errors[f"{user_nets}:forty_two"] == "the builder returned an int, not an nn.Module"
    assert pd.isna(errors["alexnet"])


def test_strict_fails_a_sweep_with_a_partial_row(capsys, tmp_path, user_nets):
    argv = ["profile", "--arch", f"{user_nets}:plain", "--iters", "1", "--warmup", "0", "--input-size", "16", "--out"]
    assert run(capsys, *argv, str(tmp_path / "a"))[0] == 0
    rows = run_profile(ProfileConfig(arch="inception_v3", metrics="static", batch_sizes=(1,))).rows
    assert rows[0]["status"] == "partial"  # saved bytes cannot exist at batch 1: a fact, exit 0 without --strict
    code, out, err = run(capsys, "profile", "--arch", "inception_v3", "--metrics", "static", "--strict", "--out",
                         str(tmp_path / "b"))
    assert code == 1


# 4. Forwards that return a tuple or a dict.

@pytest.mark.parametrize("builder", ["tuple_net", "dict_net"])
def test_a_tuple_or_a_dict_with_logits_is_profiled_and_trained(capsys, tmp_path, user_nets, builder):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:{builder}", "--iters", "1", "--warmup", "0",
                         "--input-size", "16", "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "p" / "profile.csv")["status"]) == ["ok"]
    code, out, err = run(capsys, "train", "--arch", f"{user_nets}:{builder}", "--steps", "2", "--batch-size", "4",
                         "--input-size", "16", "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "t" / "train.csv")["status"]) == ["ok"]


@pytest.mark.parametrize("builder, said", [
    ("bad_dict", "the forward returned a dict with keys 'features'; convbench takes a tensor of logits"),
    ("str_net", "the forward returned a str; convbench takes a tensor of logits")])
def test_a_forward_convbench_cannot_use_is_said_in_one_line(capsys, tmp_path, user_nets, builder, said):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:{builder}", "--metrics", "static", "--input-size", "16",
                         "--out", str(tmp_path / "p"))
    assert code == 1
    assert pd.read_csv(tmp_path / "p" / "profile.csv")["error"][0].startswith(said)


# 10. Layers add up to the model.

def test_layers_add_up_to_the_model_with_functional_matmuls_attributed(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:plain", "--by-layer", "--iters", "1", "--warmup", "0",
                         "--input-size", "16", "--out", str(tmp_path / "l"))
    assert code == 0, err
    layers = pd.read_csv(tmp_path / "l" / "layers.csv").set_index("module")
    total = pd.read_csv(tmp_path / "l" / "profile.csv")["macs"][0]
    assert total == 16 * 16 * 8 * 27 + 2 * 64 + 80
    assert layers["self_macs"].sum() == total and layers.loc["(model)", "self_macs"] == 128  # the two matmuls
    assert "USDT" not in out + err


def test_every_zoo_model_s_layers_add_up(zoo_counts):
    from convbench.measure.counts import model_counts
    from convbench.zoo.specs import resolve_models
    for spec in resolve_models("all"):
        counts = model_counts(spec, by_layer=True)
        assert sum(layer["self_macs"] for layer in counts["layers"]) == counts["macs"] == zoo_counts[spec.name]["macs"], spec.name
        assert sum(layer["self_acts"] for layer in counts["layers"]) == counts["acts"], spec.name


# 11. Smaller rough edges.

def test_h_is_help_and_bad_batch_lists_are_refused(capsys):
    code, out, err = run(capsys, "profile", "-h")
    assert code == 0 and "--batch-size" in out and "<bool>" not in out
    code, out, err = run(capsys, "profile", "-b", "1,,2", "--metrics", "static")
    assert code == 2 and err.strip() == "error: --batch-size must be integers separated by commas, got '1,,2'"


def test_list_has_the_paper_column(capsys):
    code, out, err = run(capsys, "list", "resnet50")
    assert code == 0 and "paper" in out.splitlines()[1] and "He et al." in out


def test_the_noisy_legend_only_follows_timed_rows(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(tmp_path / "s"))
    assert code == 0 and "~ after a latency" not in out


def test_a_side_that_changes_speed_within_its_pairs_is_said():
    from convbench.measure.paired import drift, drift_note
    steady = [1.7, 1.8, 1.7, 1.75, 1.72, 1.71, 1.69, 1.74, 1.7]
    switched = [1.7] * 10 + [8.8] * 5  # the last 5 of 15 pairs of G=32 ran about 5x slower
    assert drift(steady) == pytest.approx(1.0, abs=0.05) and drift_note("variant", steady) is None
    assert drift(switched) == pytest.approx(8.8 / 1.7)
    assert drift_note("variant", switched).startswith("the variant's time moved 5.2x between the first and the last third")

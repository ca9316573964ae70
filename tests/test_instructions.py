"""Counting instructions instead of timing: the region arithmetic, the gate's verdicts and its failures in one line,
and, under the real valgrind (`-m instructions`, as .ci/run runs them), the instruction gate on a team's scratch
repository and the profile column, exact across runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from convbench.gate import counted
from convbench.gate.counted import Counted
from cli_helpers import team_package
from convbench.measure import instructions

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None,
                                    reason="valgrind is not installed here (.ci/run installs Debian's)")


def _dump(path: Path, total: int) -> None:
    path.write_text(f"version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: {total}\ntotals: {total}\n")


def test_the_two_regions_difference_is_the_instructions_of_n_calls(tmp_path):
    _dump(tmp_path / "out.123.1", 1_000_500)      # N = 4 calls and the region's fixed cost of 500
    _dump(tmp_path / "out.123.2", 2_000_500)      # 2N calls and the same cost
    _dump(tmp_path / "out.123", 0)                # what was left at exit: not a region
    dumps = [str(p) for p in tmp_path.iterdir()]
    assert instructions.per_call(dumps, 4) == 250_000
    with pytest.raises(instructions.CountFailed, match="expected two counted regions, callgrind dumped 1"):
        instructions.per_call([str(tmp_path / "out.123.1")], 4)


def test_a_missing_valgrind_is_one_line_naming_the_install(monkeypatch, tmp_path, capsys):
    from cli_helpers import run
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(instructions.CountFailed, match="apt-get install valgrind"):
        instructions.valgrind()
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "instructions", "--out",
                         str(tmp_path / "p"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "apt-get install valgrind" in err
    code, out, err = run(capsys, "gate", "--measure", "instructions", "--repo", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "apt-get install valgrind" in err


def test_why_a_count_failed_is_said_in_one_line():
    assert "an instruction valgrind does not know" in instructions._why(-4, "vex amd64->IR: unhandled instruction")
    assert instructions._why(1, "==1== x\nValueError: bad model\n") == \
        "the counted process failed under valgrind (exit 1): ValueError: bad model"


def test_instruction_verdicts_regressed_improved_failed_and_new():
    counts = {"same": (Counted(1_000_000), Counted(1_000_000)), "up": (Counted(1_000_000), Counted(1_020_000)),
              "down": (Counted(1_000_000), Counted(900_000)), "broken": (Counted(1_000_000), Counted(None, "exit 1")),
              "added": (Counted(None, "KeyError"), Counted(5))}
    frame = counted.judge_counts(counts, 0.01).set_index("benchmark")
    assert frame["verdict"].to_dict() == {"added": "new", "broken": "failed", "down": "improved", "same": "ok",
                                          "up": "regressed"}
    assert set(frame["measure"]) == {"instructions"} and frame.loc["up", "head_instructions"] == 1_020_000
    lines = counted.offender_lines(frame.reset_index())
    assert lines[0] == "FAILED broken: the candidate cannot run it: exit 1"
    assert lines[1] == "REGRESSED up  instructions per call 1,000,000 -> 1,020,000  ratio 1.0200x > 1.0100x"
    summary = counted.summary_line(frame.reset_index(), "base abc")
    assert summary.startswith("gate: FAIL, 2 of 4 benchmarks regressed or failed") and "1 improved, 1 new" in summary


def test_a_deterministic_slowdown_for_the_proof():
    from convbench.gate.worker import repeated
    calls = []
    slower = repeated(lambda: calls.append(1), 1.25)
    for _ in range(100):
        slower()
    assert len(calls) == 125


# Under the real valgrind.

TEAM = '''
import torch
from torch import nn

WIDTH = 16


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3, padding=1)
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(x.mean((2, 3)))


def build():
    return Net()
'''


@pytest.fixture()
def team(tmp_path: Path) -> Path:
    repo = tmp_path / "team"
    team_package(repo, {"models.py": TEAM})
    return repo


def _gate(repo: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "convbench", "gate", "--measure", "instructions", "--arch",
                           "teamnet.models:build", "--input-shape", "3,32,32", "--out", "g"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.instructions
@needs_valgrind
def test_the_instruction_gate_passes_unchanged_code_with_equal_counts_and_fails_a_one_op_change(team: Path):
    done = _gate(team)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule: a benchmark regresses when its instructions per call" in done.stdout
    row = pd.read_csv(team / "g" / "gate.csv").iloc[0]
    assert row.measure == "instructions" and row.base_instructions == row.head_instructions > 0
    assert "gate: PASS, 1 benchmark within 1.00% more instructions per call" in done.stdout

    models = team / "teamnet" / "models.py"
    models.write_text(models.read_text().replace("x = torch.relu(self.conv(x))", "x = torch.relu(self.conv(x)) * 1.0"))
    done = _gate(team)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("REGRESSED"))
    assert line.startswith("REGRESSED teamnet.models:build[b1]  instructions per call ")
    row = pd.read_csv(team / "g" / "gate.csv").iloc[0]
    assert row.verdict == "regressed" and row.head_instructions > row.base_instructions
    assert f"ratio {row.ratio:.4f}x > 1.0100x" in line


@pytest.mark.instructions
@needs_valgrind
def test_the_profile_column_is_exact_across_runs(tmp_path: Path):
    nets = tmp_path / "widths.py"
    nets.write_text(textwrap.dedent('''
        from torch import nn

        def narrow():
            return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))

        def wide():
            return nn.Sequential(nn.Conv2d(3, 36, 3, padding=1), nn.ReLU(), nn.Conv2d(36, 36, 3, padding=1))
    '''))
    runs = [subprocess.Popen([sys.executable, "-m", "convbench", "profile", "--arch", "widths:narrow,widths:wide",
                              "--input-size", "32", "--metrics", "instructions", "--out", f"p{i}"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for proc in runs:
        out, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, out + err
    first, second = (pd.read_csv(tmp_path / f"p{i}" / "profile.csv").set_index("model") for i in (1, 2))
    assert first["instructions"].tolist() == second["instructions"].tolist()
    assert (first["instructions_per_mac"] > 0).all()
    # 36 channels: more MACs, and more instructions per MAC (off the vector width)
    assert first.loc["widths:wide", "macs"] > first.loc["widths:narrow", "macs"]
    assert first.loc["widths:wide", "instructions"] > first.loc["widths:narrow", "instructions"]
    print(json.dumps(first[["macs", "instructions", "instructions_per_mac"]].to_dict()))


@pytest.mark.instructions
@needs_valgrind
def test_selfcheck_counts_a_small_forward_twice_and_finds_the_same_figure(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "convbench", "selfcheck", "--check", "instructions_repeat"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "instructions_repeat" in done.stdout and "pass" in done.stdout


PLUGIN_TESTS = '''
def test_work(convbench_instructions, benchmark):
    figure = convbench_instructions("teamnet.models:build", input_shape=(3, 16, 16), file="counts.json")
    benchmark.pedantic(lambda: None, rounds=1)
    assert benchmark.extra_info["instructions_per_call"] == figure
'''


@pytest.mark.instructions
@needs_valgrind
def test_the_fixture_holds_instructions_per_call_to_the_committed_figure(team: Path):
    (team / "test_work.py").write_text(PLUGIN_TESTS)

    def pytest_run(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST_")}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "test_work.py", *args], cwd=team, env=env, capture_output=True, text=True, timeout=900)
    done = pytest_run("--convbench-update")
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = json.loads((team / "counts.json").read_text())["instructions"]
    assert list(recorded) == ["teamnet.models:build[b1]"] and recorded["teamnet.models:build[b1]"] > 0
    models = team / "teamnet" / "models.py"
    models.write_text(models.read_text().replace("WIDTH = 16", "WIDTH = 24"))
    done = pytest_run()
    assert done.returncode == 1
    assert "instructions per call of teamnet.models:build[b1] moved" in done.stdout and "tolerance 1.00%" in done.stdout

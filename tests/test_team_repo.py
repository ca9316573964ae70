"""A team guards its own network in its own repository, as a new user would: a scratch git repository with a
package (not a zoo model), its settings in pyproject.toml, a few lines of pytest. Through the CLI and through
pytest: the baseline is written and committed; unchanged code passes both gates; a widened stage fails the count
gate naming params and MACs; a forward made about 3x slower at equal MACs fails the latency gate naming the model
and batch; the plugin's benchmarks honour pytest-benchmark's compare-fail threshold; compare puts the team's two
blocks side by side with an interval."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import git, team_package

MODELS = '''
import torch
from torch import nn

WIDTH = 16
SLOW = False


class SeparableSE(nn.Module):
    """A depthwise-separable block with squeeze-excitation."""

    def __init__(self, width):
        super().__init__()
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.pointwise = nn.Conv2d(width, width, 1, bias=False)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width // 4, 1), nn.ReLU(),
                                nn.Conv2d(width // 4, width, 1), nn.Sigmoid())

    def forward(self, x):
        h = torch.relu(self.pointwise(self.depthwise(x)))
        return x + h * self.se(h)


class Net(nn.Module):
    def __init__(self, width=WIDTH, slow=SLOW):
        super().__init__()
        self.slow = slow
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), *(SeparableSE(width) for _ in range(4)))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.features(x)
        if self.slow and x.device.type != "meta":  # the same work twice again, uncounted: about 3x the time at equal
            self.features(x)                        # MACs, which a busy host cannot hide from either gate
            self.features(x)
        return self.head(h.mean((2, 3)))


def build():
    return Net()
'''

BLOCKS = '''
from torch import nn


def dense():
    return nn.Conv2d(64, 64, 7, padding=3, bias=False)


def factorized():
    return nn.Sequential(nn.Conv2d(64, 64, (1, 7), padding=(0, 3), bias=False),
                         nn.Conv2d(64, 64, (7, 1), padding=(3, 0), bias=False))
'''

PYPROJECT = '''
[project]
name = "teamnet"
version = "0.1"

[tool.convbench]
arch = ["teamnet.models:build"]
batch-size = [2]
input-shape = [3, 32, 32]
baseline = "tests/convbench-baseline.json"
'''

TESTS = '''
def test_counts(convbench_counts):
    convbench_counts("teamnet.models:build", input_shape=(3, 32, 32))


def test_speed(convbench_benchmark):
    convbench_benchmark("teamnet.models:build", batch_size=2, input_shape=(3, 32, 32), rounds=15)
'''


def _env() -> dict[str, str]:
    # The team's own environment: convbench installed, none of this repository's test helpers on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS") and not k.startswith("PYTEST_")}
    return {**env, "COLUMNS": "200"}


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=repo, env=_env(), capture_output=True, text=True, timeout=600)


def _convbench(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "convbench", *args)


def _pytest(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args)


@pytest.fixture()
def team(tmp_path: Path) -> Path:
    repo = tmp_path / "teamrepo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_convbench.py").write_text(TESTS)
    (repo / "pyproject.toml").write_text(PYPROJECT)
    team_package(repo, {"models.py": MODELS, "blocks.py": BLOCKS})
    return repo


def _edit(repo: Path, old: str, new: str) -> None:
    path = repo / "teamnet" / "models.py"
    path.write_text(path.read_text().replace(old, new))


def test_a_team_guards_its_own_network_with_both_gates_through_the_cli(team: Path):
    done = _convbench(team, "baseline", "--update")
    assert done.returncode == 0, done.stderr
    git(team, "add", "tests/convbench-baseline.json")
    git(team, "commit", "-qm", "accept the counts")

    # The latency gate end to end on the team's code: the merge base found, a model the base lacks new, every pass
    # written. Its verdicts are timings, which no unit test holds (a busy host moves them): the simulated-worker tests
    # of test_gate.py hold the rule, CI's `convbench gate --prove resnet18` and benchmarks/gate_sensitivity.py the
    # clock, and test_instructions.py a change of the team's forward, exactly.
    models = team / "teamnet" / "models.py"
    models.write_text(models.read_text() + "\n\ndef build_large():\n    return Net(width=32)\n")
    done = _convbench(team, "gate", "--arch", "teamnet.models:build,teamnet.models:build_large", "--out", "g")
    assert done.returncode in (0, 1, 4), done.stdout + done.stderr
    assert "the merge base of HEAD and main" in done.stdout and "rule: a benchmark regresses when" in done.stdout
    gate = pd.read_csv(team / "g" / "gate.csv")
    assert list(gate["pass"]) == ["1", "2", "judged", "judged"] and gate["measure"].eq("time").all()
    assert gate.set_index("benchmark").loc["teamnet.models:build_large[b2]", "verdict"] == "new"

    _edit(team, "WIDTH = 16", "WIDTH = 24")  # a stage widened
    done = _convbench(team, "baseline")
    assert done.returncode == 1 and "teamnet.models:build" in done.stdout
    assert " params " in done.stdout and " macs " in done.stdout
    _edit(team, "WIDTH = 24", "WIDTH = 16")


def test_the_plugin_checks_counts_and_times_through_pytest_benchmark(team: Path):
    done = _pytest(team, "--convbench-update", "tests/test_convbench.py::test_counts")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (team / "tests" / "convbench-baseline.json").exists()
    done = _pytest(team, "tests/test_convbench.py", "--benchmark-save=base")
    assert done.returncode == 0, done.stdout + done.stderr

    _edit(team, "WIDTH = 16", "WIDTH = 24")
    done = _pytest(team, "tests/test_convbench.py::test_counts")
    assert done.returncode == 1 and "exact counts of teamnet.models:build moved" in done.stdout and "params" in done.stdout
    _edit(team, "WIDTH = 24", "WIDTH = 16")

    # pytest-benchmark saved the speed test in reference-workload units, the case named (its thresholds are its own,
    # and timings are not held in a unit test)
    saved = json.loads(next((team / ".benchmarks").rglob("*base.json")).read_text())["benchmarks"]
    assert [b["extra_info"]["convbench_case"] for b in saved] == ["teamnet.models:build[b2]"]
    assert saved[0]["extra_info"]["unit"] == "multiples of convbench's reference workload"
    assert saved[0]["stats"]["rounds"] == 15 and saved[0]["stats"]["min"] > 0


def test_compare_puts_the_team_s_two_blocks_side_by_side_with_an_interval(team: Path):
    done = _convbench(team, "compare", "teamnet.blocks:dense", "teamnet.blocks:factorized", "--shape", "64,17,17",
                      "--claim", "0.29", "--pairs", "9", "--out", "c")
    assert done.returncode == 0, done.stderr
    verdict = next(line for line in done.stdout.splitlines() if line.strip().startswith("teamnet.blocks:factorized:"))
    assert "MACs" in verdict and "95% CI" in done.stdout
    assert "teamnet.blocks:factorized: 0.29 of teamnet.blocks:dense" in done.stdout  # the claim, put to the test


MISUSE = '''
def test_batch_zero(convbench_benchmark):
    convbench_benchmark("teamnet.models:build", batch_size=0, input_shape=(3, 32, 32))


def test_rounds_zero(convbench_benchmark):
    convbench_benchmark("teamnet.models:build", rounds=0, input_shape=(3, 32, 32))


def test_bad_spec(convbench_benchmark):
    convbench_benchmark("teamnet.nosuch:build", input_shape=(3, 32, 32))


def test_no_cuda(convbench_benchmark):
    convbench_benchmark("teamnet.models:build", device="cuda", input_shape=(3, 32, 32))


def test_raising_builder(convbench_benchmark):
    convbench_benchmark("teamnet.models:raises", input_shape=(3, 32, 32))


def test_bad_shape(convbench_counts):
    convbench_counts("teamnet.models:build", input_shape=(3, 0, 32))


def test_counts_of_a_raising_builder(convbench_counts):
    convbench_counts("teamnet.models:raises", input_shape=(3, 32, 32))
'''


def test_a_misused_fixture_fails_its_test_in_one_line_and_never_passes(team: Path):
    (team / "tests" / "test_misuse.py").write_text(MISUSE)
    (team / "teamnet" / "models.py").write_text((team / "teamnet" / "models.py").read_text()
                                               + "\n\ndef raises():\n    raise RuntimeError('no weights here')\n")
    done = _pytest(team, "tests/test_misuse.py", "--benchmark-disable")
    said = {
        "test_batch_zero": "batch sizes must be positive integers, got 0",
        "test_rounds_zero": "convbench_benchmark: rounds must be at least 1",
        "test_bad_spec": "cannot import 'teamnet.nosuch' for --arch teamnet.nosuch:build",
        "test_no_cuda": "--device cuda asked for, but torch sees no CUDA device here",
        "test_raising_builder": "building the model failed: RuntimeError: no weights here",
        "test_bad_shape": "--input-shape is C,H,W with three positive integers",
        "test_counts_of_a_raising_builder": "cannot count teamnet.models:raises: building the model failed: RuntimeError: "
                                            "no weights here",
    }
    sections = done.stdout.split(" FAILURES ")[-1].split("short test summary")[0]
    for test, line in said.items():  # each test's failure is its one line, under its own header
        part = sections.split(f" {test} ")[1].split("\n_")[0]
        assert [row for row in part.splitlines()[1:] if row.strip()][0].startswith(line), (test, part)
    assert "7 failed" in done.stdout and "During handling" not in done.stdout
    assert "convbench/" not in done.stdout  # no frame of convbench's own in the report


def test_an_unknown_setting_names_the_closest_and_fails_the_fixture_in_one_line(team: Path):
    (team / "pyproject.toml").write_text(PYPROJECT.replace("baseline =", "baselin ="))
    done = _pytest(team, "tests/test_convbench.py::test_counts", "-rf")
    assert done.returncode == 1
    assert (f"\n{team}/pyproject.toml: [tool.convbench] has no setting 'baselin'; did you mean 'baseline'?\n"
            in done.stdout), done.stdout
    assert "convbench/" not in done.stdout

"""The latency gate: verdicts from pairs, lockstep order, base/head isolation in real worker processes, the
proof that a deliberate slowdown is caught, and its errors. No timing is asserted: the verdicts and the proof are
driven by simulated sides (the gate's real timing is judged in CI by `convbench gate --prove resnet18`, and its
sensitivity measured by benchmarks/gate_sensitivity.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convbench.errors import UserError
from convbench.gate import record, trees, verdict
from convbench.gate.ab import GateConfig, run_gate
from convbench.gate.lockstep import lockstep
from cli_helpers import run


def _pairs(base: float, head: float, n: int = 11, jitter: float = 0.0):
    return [[((base * (1 + jitter * ((k % 3) - 1)), 1.0), (head, 1.0)) for k in range(n)]]


def test_judge_pairs_flags_a_2x_slowdown_and_passes_equal_code():
    frame = verdict.judge_pairs({"slow": _pairs(1.0, 2.0), "same": _pairs(1.0, 1.0, jitter=0.02)}, 0.25,
                                skipped={"added": "not in the base's cases"})
    rows = verdict.judged(frame).set_index("benchmark")
    assert list(frame["pass"]) == ["1", "judged", "1", "judged", "judged"]  # every pass, then the row that judges
    assert rows.loc["slow", "verdict"] == "regressed" and rows.loc["slow", "ratio"] == 2.0
    assert rows.loc["slow", "ci_low"] == 2.0 and rows.loc["slow", "pairs"] == 11
    assert rows.loc["same", "verdict"] == "ok"
    assert rows.loc["added", "verdict"] == "new"
    lines = verdict.offender_lines(frame)
    assert len(lines) == 1 and lines[0].startswith("REGRESSED slow ") and "2.00x" in lines[0] and "> 1.25x" in lines[0]
    summary = verdict.summary_line(frame, "base abc")
    assert summary.startswith("gate: FAIL, 1 of 2 benchmarks") and "1 new" in summary


def test_an_interval_that_reaches_the_limit_is_unresolved_never_passed():
    # Half the pairs at 1.0, half at 1.4: the interval reaches from 1 to above the limit.
    got = [((1.0, 1.0), (1.0 if k % 2 else 1.4, 1.0)) for k in range(12)]
    frame = verdict.judged(verdict.judge_pairs({"wobbly": [got]}, 0.25))
    assert frame.iloc[0]["ci_low"] == 1.0 and frame.iloc[0]["verdict"] == "unresolved"
    assert verdict.summary_line(verdict.judge_pairs({"wobbly": [got]}, 0.25), "base x").startswith("gate: UNRESOLVED")
    assert verdict.offender_lines(verdict.judge_pairs({"wobbly": [got]}, 0.25))[0].startswith("UNRESOLVED wobbly")


def test_all_passes_are_judged_together_and_passes_that_disagree_leave_it_unresolved():
    normal, slow = _pairs(1.0, 1.02, jitter=0.1)[0], _pairs(1.0, 1.37, jitter=0.1)[0]
    frame = verdict.judged(verdict.judge_pairs({"moody": [slow, normal], "real": [slow, _pairs(1.0, 1.5, jitter=0.1)[0]],
                                                "same": [normal, normal]}, 0.25))
    frame = frame.set_index("benchmark")
    # One pass at 1.37x, one at 1.02x: each pair of processes ran at a speed of its own; neither pass is thrown away
    assert frame.loc["moody", "verdict"] == "unresolved" and "passes disagree (pass 2 " in frame.loc["moody", "note"]
    assert frame.loc["real", "verdict"] == "regressed" and frame.loc["real", "pairs"] == 22
    assert frame.loc["same", "verdict"] == "ok" and frame.loc["same", "ratio"] == 1.02


def test_judge_mins_lists_gone_and_new():
    frame = verdict.judge_mins({"a": 1.0, "gone": 2.0}, {"a": 1.5, "new": 3.0}, 0.25).set_index("benchmark")
    assert list(frame["verdict"]) == ["regressed", "gone", "new"]
    assert frame.loc["a", "ratio"] == 1.5


class FakeSide:
    """A side whose rounds take `seconds[name]`, doubled for names matching its slowdown pattern."""

    def __init__(self, label, seconds, slowdown=None, calls=None, broken=()):
        self.label, self.seconds, self.slowdown, self.calls, self.broken = label, seconds, slowdown, calls, broken

    def info(self):
        return {name: 6 for name in self.seconds}

    def setup(self, name):
        from convbench.gate.lockstep import WorkerError
        if name in self.broken:
            raise WorkerError(f"KeyError: {name}")

    def round(self, name):
        if self.calls is not None:
            self.calls.append(self.label)
        factor = 2 if self.slowdown and self.slowdown in name else 1
        return self.seconds[name] * factor, 1.0

    def drop(self, name):
        pass

    def close(self):
        pass


def test_lockstep_alternates_which_side_goes_first_and_skips_what_the_base_cannot_run():
    calls, pairs, skipped = [], {}, {}
    base = FakeSide("base", {"x": 1.0, "y": 1.0}, calls=calls, broken=("y",))
    head = FakeSide("head", {"x": 1.0, "y": 1.0}, calls=calls)
    lockstep(base, head, ["x", "y"], {"x": 4, "y": 4}, pairs, skipped)
    assert calls == ["base", "head", "head", "base", "base", "head", "head", "base"]
    assert len(pairs["x"]) == 1 and len(pairs["x"][0]) == 4 and "y" not in pairs and skipped["y"].startswith("the base cannot run it")


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A git repository with a package, a cases folder, and a committed record folder."""
    root = tmp_path / "repo"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("DELAY = 0.002\nTAG = 'base'\n")
    (root / "suites").mkdir()
    (root / "suites" / "__init__.py").write_text("")
    (root / "suites" / "cases.py").write_text(textwrap.dedent('''
        import os
        import pathlib
        import time
        import mypkg
        from convbench.bench import Case

        def body():
            seen = os.environ.get("CONVBENCH_TEST_SEEN")
            if seen:
                pathlib.Path(seen, mypkg.TAG).touch()
            return lambda: time.sleep(mypkg.DELAY)

        def gate_cases(device):
            names = ["test_sleep[a-cpu]", "test_sleep[b-cpu]"] + ["test_sleep[new-cpu]"] * getattr(mypkg, "EXTRA", False)
            return {n: Case(n, body, rounds=9, warmup=1) for n in names}
    '''))
    (root / "results" / "benchmarks").mkdir(parents=True)
    (root / "results" / "benchmarks" / "README").write_text("record\n")
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True)
    return root


def _config(repo: Path, **kw) -> GateConfig:
    return GateConfig(repo=repo, cases="suites.cases", sources=("mypkg",), out=None, **kw)


def _judged(result):
    return verdict.judged(result.frame).set_index("benchmark")


def test_real_workers_run_each_side_against_its_own_code(repo: Path, tmp_path: Path, monkeypatch):
    # Each body leaves a mark named by its side's mypkg.TAG: the base must run the committed code, the candidate the
    # working tree's (uncommitted), and a case only the candidate has is new, not a failure.
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("CONVBENCH_TEST_SEEN", str(seen))
    (repo / "mypkg" / "__init__.py").write_text("DELAY = 0.002\nTAG = 'head'\nEXTRA = True\n")
    lines: list[str] = []
    result = run_gate(_config(repo, repeat=1), say=lines.append)
    rows = _judged(result)
    assert sorted(p.name for p in seen.iterdir()) == ["base", "head"]
    assert rows.loc["test_sleep[new-cpu]", "verdict"] == "new"
    assert set(rows.loc[["test_sleep[a-cpu]", "test_sleep[b-cpu]"], "verdict"]) <= {"ok", "regressed", "unresolved"}
    assert any(line.startswith("rule: a benchmark regresses when the median head/base ratio of its pairs") for line in lines)


class SimulatedWorker:
    """A side's worker whose rounds take 1 s with 1% noise, `factor` times longer for the cases the gate asks it to
    slow (as the real worker does for --prove)."""

    def __init__(self, label, tree, env, noise=0.01, seed=0):
        import random
        from convbench.gate.worker import FACTOR_ENV, SLOW_ENV
        self.label, self.noise, self.random = label, noise, random.Random(f"{label}{seed}")
        self.slow, self.factor = env.get(SLOW_ENV), float(env.get(FACTOR_ENV) or 2.0)

    def info(self):
        return {"test_sleep[a-cpu]": 9, "test_sleep[b-cpu]": 9}

    def setup(self, name): pass
    def drop(self, name): pass
    def close(self): pass

    def round(self, name):
        t = 1.0 + self.noise * self.random.random()
        return (t * self.factor if self.slow and self.slow in name else t), 1.0


def test_unchanged_code_passes_and_the_proof_bites_only_where_asked_by_the_factor_asked(repo: Path):
    lines: list[str] = []
    result = run_gate(_config(repo, prove="a-cpu", prove_factor=1.6), say=lines.append, make_side=SimulatedWorker)
    assert result.passed and result.proof_held is True and result.exit_code == 0
    proof = verdict.judged(result.proof).set_index("benchmark")
    assert list(proof.index) == ["test_sleep[a-cpu]"] and proof.loc["test_sleep[a-cpu]", "verdict"] == "regressed"
    assert 1.55 <= proof.loc["test_sleep[a-cpu]", "ratio"] <= 1.65
    assert any(line.startswith("rule: a benchmark regresses when the median head/base ratio of all 2 passes") for line in lines)
    assert any(line.startswith("proof: a deliberate 1.6x slowdown fails the gate") for line in lines)


def test_a_gate_that_cannot_catch_a_2x_slowdown_says_so(repo: Path):
    result = run_gate(_config(repo, prove="a-cpu", fail_above=3.0, repeat=1), say=lambda line: None,
                      make_side=SimulatedWorker)
    assert result.passed and result.proof_held is False and result.exit_code == 3
    assert result.lines[-1].startswith("proof FAILED")


def test_a_case_the_clock_cannot_resolve_is_said_and_exits_4(repo: Path):
    def noisy(label, tree, env):
        return SimulatedWorker(label, tree, env, noise=1.0)
    lines: list[str] = []
    result = run_gate(_config(repo, fail_above=0.05, repeat=1), say=lines.append, make_side=noisy)
    assert result.exit_code == 4 and result.unresolved and result.passed
    assert lines[-1].startswith("gate: UNRESOLVED") and any(line.startswith("UNRESOLVED test_sleep[") for line in lines)
    # the looks went on while the interval straddled the limit: three times a case's rounds
    assert set(_judged(result)["pairs"]) == {27}


def test_a_base_without_the_record_folder_is_refused_in_one_line(tmp_path: Path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_text("x")
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True)
    with pytest.raises(UserError, match="no commit has changed results/benchmarks"):
        trees.default_base(root)
    assert trees.default_base(root, "f") == subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                                           capture_output=True, text=True).stdout.strip()


def test_the_record_is_compared_only_on_the_machine_kind_that_saved_it(tmp_path: Path):
    here = record.this_machine()
    for folder, cpu in (("same", here.cpu), ("other", "Some Other CPU")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0001_x.json").write_text(json.dumps({
            "machine_info": {"cpu": {"brand_raw": cpu, "count": here.cores}, "torch": here.torch},
            "benchmarks": [{"name": "t", "stats": {"min": 1.5}}]}))
    match, found = record.matching_record(tmp_path)
    assert len(found) == 2 and match is not None and match.path.parent.name == "same" and match.mins == {"t": 1.5}
    (tmp_path / "same" / "0001_x.json").unlink()
    assert record.matching_record(tmp_path)[0] is None


def test_cli_bad_input_is_one_line(capsys, repo: Path, tmp_path: Path):
    code, out, err = run(capsys, "gate", "--fail-above", "lots", "--repo", str(repo))
    assert code == 2 and err.strip() == "error: --fail-above must be a percentage such as 25%, got 'lots'"
    code, out, err = run(capsys, "gate", "--prove-factor", "0.5", "--repo", str(repo))
    assert code == 2 and err.strip() == "error: --prove-factor must be above 1 (a slowdown), got 0.5"
    code, out, err = run(capsys, "gate", "--repo", str(tmp_path / "nowhere"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: git ")
    code, out, err = run(capsys, "gate", "--repo", str(repo), "--cases", "suites.cases", "--source", "mypkg", "--base", "nosuchrev")
    assert code == 2 and err.strip() == f"error: --base 'nosuchrev' is not a commit of {repo}"
    code, out, err = run(capsys, "gate", "--repo", str(repo), "--cases", "suites.cases", "--source", "mypkg", "--against", "record")
    assert code == 2 and "use --against base on shared runners" in err


def test_the_project_suite_cases_match_the_pytest_names():
    # The gate names benchmarks by their pytest test names; both must come from the same case list.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from suites.cases import gate_cases
    names = set(gate_cases("cpu"))
    assert "test_model[resnet18-cpu]" in names and "test_block[grouped:dense_vs_grouped_3x3,_G=32:dense-cpu]" in names
    assert len(names) == 37 and "test_block[pooling:LRN_vs_none_after_conv1:conv1+ReLU+LRN-cpu]" in names

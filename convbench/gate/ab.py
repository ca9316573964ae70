"""`convbench gate`: the candidate against a base, on this machine, in this run.

Both sides run the candidate's benchmark cases (suites/cases.py) against their own library code, each in its
own worker process, in lockstep (convbench.gate.lockstep). `prove` then slows the benchmarks matching a pattern
2x in the candidate and checks that the gate fails exactly those: every CI run shows the gate still bites."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable


from convbench.run.config import validate_device
from convbench.results.folders import prove_writable
from convbench.errors import UserError
from convbench.gate import record as records
from convbench.gate import trees, verdict
from convbench.gate.lockstep import Pairs, Side, Worker, WorkerError, lockstep, shared_cpu
from convbench.results.writers import to_markdown

if TYPE_CHECKING:
    import pandas as pd

SLOWDOWN_ENV = "CONVBENCH_SUITE_SLOWDOWN"


@dataclass(frozen=True)
class GateConfig:
    repo: Path = Path(".")
    base: str | None = None            # None: the last commit that changed the record folder
    against: str = "base"              # base (measured now, paired) or record (a dedicated runner's committed record)
    cases: str = "suites.cases"
    sources: tuple[str, ...] = ("convbench",)
    device: str = "cpu"
    fail_above: float = 0.25
    repeat: int = 2
    select: str | None = None
    prove: str | None = None
    out: Path | None = Path("runs/gate")
    record_dir: str = trees.RECORD_DIR
    timeout: float = 600.0             # seconds one worker request may take

    def __post_init__(self) -> None:
        if self.against not in ("base", "record"):
            raise UserError(f"unknown --against {self.against!r}; choose base or record")
        if self.repeat < 1:
            raise UserError("--repeat must be at least 1")
        if not (0 < self.fail_above < 10):
            raise UserError("--fail-above must be a percentage above 0, for example 25%")
        if not self.sources:
            raise UserError("--source names no path")
        validate_device(self.device)


@dataclass
class GateResult:
    frame: pd.DataFrame
    passed: bool
    lines: list[str] = field(default_factory=list)
    proof: pd.DataFrame | None = None
    proof_held: bool | None = None     # None: no proof asked for

    @property
    def exit_code(self) -> int:
        if not self.passed:
            return 1
        return 3 if self.proof_held is False else 0


Say = Callable[[str], None]
MakeSide = Callable[[str, Path, dict[str, str | None]], Side]


def _selected(names: list[str], select: str | None) -> list[str]:
    return [n for n in names if not select or select in n]


class _Gate:
    def __init__(self, config: GateConfig, say: Say, make_side: MakeSide | None, progress: Callable[[str], None] | None):
        self.config, self.say, self.progress = config, say, progress
        cpu = shared_cpu() if config.device == "cpu" else None
        self.make_side = make_side or (lambda label, tree, env: Worker(label, tree, config.cases, config.device,
                                                                       {"CONVBENCH_GATE_CPU": cpu, **env}, config.timeout))

    def side(self, label: str, tree: Path, env: dict[str, str | None]) -> Side:
        try:
            return self.make_side(label, tree, env)
        except WorkerError as exc:
            raise UserError(f"the {label} side could not start: {exc}") from None

    def names(self, side: Side) -> dict[str, int]:
        try:
            return side.info()
        except WorkerError as exc:
            raise UserError(f"the {side.label} side could not load {self.config.cases}: {exc}") from None

    def paired_pass(self, base_tree: Path, head_tree: Path, head_env: dict[str, str | None], label: str,
                    only: list[str] | None, head_first: bool, pairs: Pairs, skipped: dict[str, str]) -> list[str]:
        started = time.perf_counter()
        base = self.side(f"base {label}", base_tree, {SLOWDOWN_ENV: None})  # a deliberate slowdown is the candidate's only
        head = self.side(f"head {label}", head_tree, head_env)
        try:
            rounds = self.names(head)
            names = only if only is not None else _selected(list(rounds), self.config.select)
            base_has = self.names(base)
            for name in names:
                if name not in base_has:
                    skipped[name] = "not in the base's cases"
            todo = [n for n in names if n in base_has]
            try:
                lockstep(base, head, todo, rounds, pairs, skipped, head_first, self.progress)
            except WorkerError as exc:
                raise UserError(f"the gate could not finish ({label}): {exc}") from None
        finally:
            base.close()
            head.close()
        total = sum(len(pairs[n][-1]) for n in names if n in pairs)
        self.say(f"{label}: {len(names)} benchmark{'' if len(names) == 1 else 's'}, {total} paired rounds in "
                 f"{time.perf_counter() - started:.0f} s")
        return names


def run_gate(config: GateConfig, say: Say = print, make_side: MakeSide | None = None,
             progress: Callable[[str], None] | None = None) -> GateResult:
    repo = trees.repo_root(Path(config.repo))
    suite_dir = config.cases.split(".")[0]
    if not (repo / suite_dir).is_dir():
        raise UserError(f"no folder {repo / suite_dir} for the cases module {config.cases}")
    out = prove_writable(Path(config.out)) if config.out is not None else None
    gate = _Gate(config, say, make_side, progress)
    scratch = Path(tempfile.mkdtemp(prefix="convbench-gate-"))
    if os.environ.get(SLOWDOWN_ENV):
        say(f"{SLOWDOWN_ENV}={os.environ[SLOWDOWN_ENV]}: the candidate's matching benchmarks run their body twice")
    try:
        head_tree = trees.copy_paths(repo, (*config.sources, suite_dir), scratch / "head")
        if config.against == "record":
            result = _against_record(config, gate, repo, head_tree)
        else:
            result = _against_base(config, gate, repo, head_tree, scratch)
        if out is not None:
            result.frame.to_csv(out / "gate.csv", index=False)
            (out / "gate.md").write_text(to_markdown(result.frame) + "\n" + "\n".join(result.lines) + "\n")
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _conclude(frame: pd.DataFrame, against: str, lines: list[str], say: Say) -> GateResult:
    lines = lines + verdict.offender_lines(frame) + [verdict.summary_line(frame, against)]
    for line in lines[-(len(verdict.regressed(frame)) + 1):]:
        say(line)
    passed = verdict.regressed(frame).empty and not verdict.compared(frame).empty
    return GateResult(frame, passed, lines)


def _against_base(config: GateConfig, gate: _Gate, repo: Path, head_tree: Path, scratch: Path) -> GateResult:
    base_rev = trees.resolve(repo, config.base) if config.base else trees.default_base(repo, config.record_dir)
    why = "given" if config.base else f"the last commit that changed {config.record_dir}"
    base_tree = trees.base_tree(repo, base_rev, config.sources, scratch / "base")
    trees.copy_paths(repo, (config.cases.split(".")[0],), base_tree)
    header = (f"gate: base {base_rev[:12]} ({why}) against the working tree, paired rounds on this machine "
              f"({records.this_machine()}), {config.repeat} pass{'es' if config.repeat > 1 else ''}")
    gate.say(header)
    pairs: Pairs = {}
    skipped: dict[str, str] = {}
    for i in range(config.repeat):
        gate.paired_pass(base_tree, head_tree, {}, f"pass {i + 1}/{config.repeat}", None, i % 2 == 1, pairs, skipped)
    frame = verdict.judge_pairs(pairs, config.fail_above, skipped)
    record_line = _record_line(repo, config.record_dir, verdict.head_figures(pairs), config.fail_above)
    gate.say(record_line)
    result = _conclude(frame, f"base {base_rev[:12]}", [header, record_line], gate.say)
    if config.prove:
        _prove(config, gate, base_tree, head_tree, result)
    return result


def _record_line(repo: Path, record_dir: str, head_mins: dict[str, float], fail_above: float) -> str:
    match, all_records = records.matching_record(repo / record_dir)
    if match is None:
        saved = "; ".join(f"{r.path.name} on {r.machine}" for r in all_records) or "none"
        return (f"record: not compared, it was saved on another machine kind ({saved}; this one: {records.this_machine()}); "
                "judging against the base measured now")
    frame = verdict.judge_mins(match.mins, head_mins, fail_above)
    return "record, same machine kind (advisory): " + verdict.summary_line(frame, match.path.name).removeprefix("gate: ")


def _against_record(config: GateConfig, gate: _Gate, repo: Path, head_tree: Path) -> GateResult:
    match, _ = records.matching_record(repo / config.record_dir)
    if match is None:
        raise UserError(f"no record in {config.record_dir} was saved on this machine kind ({records.this_machine()}); "
                        "use --against base on shared runners")
    header = f"gate: working tree against the record {match.path} ({match.machine}), {config.repeat} pass(es)"
    gate.say(header)
    mins: dict[str, float] = {}
    for i in range(config.repeat):
        head = gate.side(f"head {i + 1}", head_tree, {})
        try:
            rounds = gate.names(head)
            for name in _selected(list(rounds), config.select):
                if gate.progress:
                    gate.progress(name)
                head.setup(name)
                mins[name] = min(mins.get(name, math.inf), *(verdict.in_reference_units(head.round(name))
                                                             for _ in range(rounds[name])))
                head.drop(name)
        except WorkerError as exc:
            raise UserError(f"the candidate's benchmarks failed: {exc}") from None
        finally:
            head.close()
    record_mins = {n: v for n, v in match.mins.items() if n in mins or not config.select or config.select in n}
    return _conclude(verdict.judge_mins(record_mins, mins, config.fail_above), f"the record {match.path.name}", [header], gate.say)


def _prove(config: GateConfig, gate: _Gate, base_tree: Path, head_tree: Path, result: GateResult) -> None:
    """Slow the benchmarks whose name contains `config.prove` 2x in the candidate: the gate must fail exactly
    those. A gate that lets this through is broken, and the run says so (exit 3)."""
    expected = sorted(n for n in verdict.compared(result.frame)["benchmark"] if config.prove in n)
    if not expected:
        raise UserError(f"--prove {config.prove!r} matches no benchmark that ran on both sides")
    pairs: Pairs = {}
    gate.paired_pass(base_tree, head_tree, {SLOWDOWN_ENV: config.prove}, "proof", expected, False, pairs, {})
    frame = verdict.judge_pairs(pairs, config.fail_above)
    caught = set(verdict.regressed(frame)["benchmark"])
    result.proof, result.proof_held = frame, caught == set(expected)
    shown = "; ".join(f"{r.benchmark} {r.ratio:.2f}x (95% CI {r.ci_low:.2f}-{r.ci_high:.2f})" for r in frame.itertuples())
    if result.proof_held:
        line = f"proof: a deliberate 2x slowdown fails the gate as it must: {shown}"
    else:
        line = f"proof FAILED: the gate let a deliberate 2x slowdown through: {shown}"
    result.lines.append(line)
    gate.say(line)

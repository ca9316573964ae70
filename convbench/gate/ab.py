"""`convbench gate`: the candidate against a base, on this machine, in this run.

Both sides time the same cases against their own code, each in its own worker process, in lockstep
(convbench.gate.lockstep): the models `--arch` names (a team's `package.module:function`, imported on each side
from that side's tree) at each batch size, or a cases module's bodies (convbench's own suites/cases.py). `prove`
then slows the cases matching a pattern by `prove_factor` in the candidate (the worker does, not the user's code)
and checks that the gate fails exactly those: every CI run shows the gate still bites, at the size of regression
the team cares about."""
from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable


from convbench.measure import clock, instructions
from convbench.measure.device import validate_device
from convbench.results.folders import prove_writable
from convbench.run.config import parse_list, validate_batches, validate_input
from convbench.errors import UserError
from convbench.gate import record as records
from convbench.gate import counted, trees, verdict
from convbench.zoo import libraries
from convbench.gate.worker import FACTOR_ENV, SLOW_ENV, model_case
from convbench.gate.lockstep import Pairs, SideWorker, Worker, WorkerError, lockstep, look_level, shared_cpu
from convbench.results.writers import write_csv, write_markdown

if TYPE_CHECKING:
    import pandas as pd

MODEL_ROUNDS = 20
MEASURES = ("time", "instructions")
DEFAULT_FAIL_ABOVE = {"time": 0.15, "instructions": 0.01}
DEFAULT_TIMEOUT = {"time": 600.0, "instructions": instructions.TIMEOUT_S}


@dataclass(frozen=True)
class GateConfig:
    repo: Path = Path(".")
    base: str | None = None            # None: the last commit that changed the record folder, else the merge base
    against: str = "base"              # base (measured now, paired) or record (a dedicated runner's committed record)
    cases: str | None = None           # a cases module (gate_cases(device)); None with `arch`: the models' cases
    arch: str | None = None            # zoo names or package.module:function, comma-separated
    batch_sizes: tuple[int, ...] = (1,)
    input_shape: tuple[int, int, int] | None = None
    sources: tuple[str, ...] | None = None  # paths taken from the base revision; None: the arch's packages, else convbench
    device: str = "cpu"
    fail_above: float = 0.15
    repeat: int = 2
    rounds: int = MODEL_ROUNDS         # of each model case per pass (a cases module sets its own)
    select: str | None = None
    prove: str | None = None
    prove_factor: float = 2.0
    out: Path | None = Path("runs/gate")
    record_dir: str = trees.RECORD_DIR
    timeout: float = 600.0             # seconds one worker request (or, counting instructions, one case) may take
    measure: str = "time"              # time: paired rounds on the clock; instructions: counted by callgrind

    def __post_init__(self) -> None:
        if self.against not in ("base", "record"):
            raise UserError(f"unknown --against {self.against!r}; choose base or record")
        if self.measure not in MEASURES:
            raise UserError(f"unknown --measure {self.measure!r}; choose time or instructions")
        if self.measure == "instructions" and self.against == "record":
            raise UserError("--measure instructions counts both sides now; it has no record to compare against")
        if self.measure == "instructions":
            try:
                instructions.valgrind()  # missing: one line naming the install, before anything starts
            except instructions.CountFailed as exc:
                raise UserError(str(exc)) from None
        if self.measure == "instructions" and self.prove and counted.proof_calls(self.prove_factor) is None:
            raise UserError(f"--prove-factor {self.prove_factor:g}: a proof that counts instructions runs the case whole "
                            f"extra times, so the factor must be a multiple of 1/{counted.MAX_PROOF_CALLS} above 1 "
                            "(1.05, 1.1, 1.25, 2)")
        if not 1 <= self.repeat <= 20:
            raise UserError("--repeat must be between 1 and 20")
        if not (0 < self.fail_above < 10):
            raise UserError("--fail-above must be a percentage above 0, for example 15%")
        if not 1.0 < self.prove_factor <= 100 or self.prove_factor != self.prove_factor:
            raise UserError(f"--prove-factor must be above 1 (a slowdown), got {self.prove_factor}")
        if not (0 < self.timeout <= 86_400):
            raise UserError(f"--timeout must be a number of seconds above 0 (at most a day), got {self.timeout}")
        if not 2 <= self.rounds <= 10_000:
            raise UserError("--rounds must be between 2 and 10,000")
        if self.sources is not None and not self.sources:
            raise UserError("--source names no path")
        if self.arch is not None and self.cases is not None:
            raise UserError("--arch and --cases both name what to time; keep one")
        if self.arch is not None:
            for part in parse_list(self.arch, "--arch"):
                if libraries.library_of(part) and len(libraries.resolve(part)) != 1:
                    raise UserError(f"--arch {part}: the gate times named models, not patterns")
        validate_batches(self.batch_sizes)
        validate_input(self.input_shape)
        validate_device(self.device)

    @property
    def source(self) -> dict:
        """What the workers time: a cases module, or the models' specs."""
        if self.arch is None:
            return {"cases": self.cases or "suites.cases"}
        return {"specs": [{"arch": a, "batch_size": b, "input_shape": _input_shape(a, self.input_shape),
                           "rounds": self.rounds} for a in parse_list(self.arch, "--arch") for b in self.batch_sizes]}


@dataclass
class GateResult:
    frame: pd.DataFrame
    passed: bool
    lines: list[str] = field(default_factory=list)
    proof: pd.DataFrame | None = None
    proof_held: bool | None = None     # None: no proof asked for
    unresolved: bool = False           # a case whose interval still reaches above the limit

    @property
    def exit_code(self) -> int:
        if not self.passed:
            return 1
        if self.proof_held is False:
            return 3
        return 4 if self.unresolved else 0


Say = Callable[[str], None]
MakeSide = Callable[[str, Path, dict[str, str | None]], SideWorker]


def _selected(names: list[str], select: str | None) -> list[str]:
    return [n for n in names if not select or select in n]


class _Gate:
    def __init__(self, config: GateConfig, say: Say, make_side: MakeSide | None, progress: Callable[[str], None] | None,
                 import_roots: tuple[str, ...] = (".",)):
        self.config, self.say, self.progress, self.roots = config, say, progress, import_roots
        cpu = shared_cpu() if config.device == "cpu" else None
        self.make_side = make_side or (lambda label, tree, env: Worker(label, tree, config.source, config.device,
                                                                       {"CONVBENCH_GATE_CPU": cpu, **env}, config.timeout,
                                                                       import_roots))
        self.what = config.arch or config.cases or "suites.cases"

    def side(self, label: str, tree: Path, env: dict[str, str | None]) -> SideWorker:
        try:
            return self.make_side(label, tree, env)
        except WorkerError as exc:
            raise UserError(f"the {label} side could not start: {exc}") from None

    def names(self, side: SideWorker, close: bool = False) -> dict[str, int]:
        """The side's benchmarks and their rounds (`close`: the side is not needed after)."""
        try:
            return side.info()
        except WorkerError as exc:
            raise UserError(f"the {side.label} side could not load {self.what}: {exc}") from None
        finally:
            if close:
                side.close()

    def paired_pass(self, base_tree: Path, head_tree: Path, head_env: dict[str, str | None], label: str,
                    only: list[str] | None, head_first: bool, pairs: Pairs, skipped: dict[str, str],
                    passes: int) -> list[str]:
        started = clock.now()
        base = self.side(f"base {label}", base_tree, {SLOW_ENV: None, FACTOR_ENV: None})  # the candidate's only
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
                lockstep(base, head, todo, rounds, pairs, skipped, head_first, self.progress, 1 + self.config.fail_above,
                         look_level(passes))
            except WorkerError as exc:
                raise UserError(f"the gate could not finish ({label}): {exc}") from None
        finally:
            base.close()
            head.close()
        total = sum(len(pairs[n][-1]) for n in names if n in pairs)
        self.say(f"{label}: {len(names)} benchmark{'' if len(names) == 1 else 's'}, {total} paired rounds in "
                 f"{clock.now() - started:.0f} s")
        return names


def _input_shape(arch: str, given: tuple[int, int, int] | None) -> list[int] | None:
    """The input a case is timed at: --input-shape, else a library model's published size (read here, once: the
    workers build the model and nothing else); None leaves a zoo model its own and a builder 3x224x224."""
    if given:
        return list(given)
    if libraries.library_of(arch):
        return list(libraries.resolve(arch)[0].input_shape)
    return None


def _arch_sources(config: GateConfig, repo: Path) -> tuple[str, ...]:
    """The paths of the packages the --arch specs import (a folder or a .py file, at the top of the repository or
    under src/); a zoo name's code is convbench's, a timm or torchvision model's the installed library's."""
    found: list[str] = []
    for spec in (parse_list(config.arch, "--arch") if config.arch else ()):
        if ":" not in spec or libraries.library_of(spec):
            if (repo / "convbench").is_dir():
                found.append("convbench")
            continue
        top = spec.partition(":")[0].split(".")[0]
        candidates = [top, f"{top}.py", f"src/{top}", f"src/{top}.py"]
        path = next((c for c in candidates if (repo / c).exists()), None)
        if path is None:
            raise UserError(f"--arch {spec}: no {top}/ or {top}.py at the top of {repo} or in src/; name the code under "
                            "test with --source")
        found.append(path)
    if not found:
        raise UserError("--arch names only zoo or library models, which both sides import from the installed packages; "
                        "gate a model of this repository (package.module:function)")
    return tuple(dict.fromkeys(found))


def run_gate(config: GateConfig, say: Say = print, make_side: MakeSide | None = None,
             progress: Callable[[str], None] | None = None) -> GateResult:
    repo = trees.repo_root(Path(config.repo))
    extra: tuple[str, ...] = ()
    if config.arch is not None:
        sources = config.sources or _arch_sources(config, repo)
    else:
        suite_dir = config.source["cases"].split(".")[0]
        if not (repo / suite_dir).is_dir():
            raise UserError(f"no folder {repo / suite_dir} for the cases module {config.source['cases']}")
        sources, extra = config.sources or ("convbench",), (suite_dir,)
    roots = tuple(dict.fromkeys(["src"] * any(s.startswith("src/") for s in sources) + ["."]))
    out = prove_writable(Path(config.out)) if config.out is not None else None
    gate = _Gate(config, say, make_side, progress, roots)
    scratch = Path(tempfile.mkdtemp(prefix="convbench-gate-"))
    try:
        head_tree = trees.copy_paths(repo, (*sources, *extra), scratch / "head")
        if config.against == "record":
            result = _against_record(config, gate, repo, head_tree)
        else:
            result = _against_base(config, gate, repo, head_tree, scratch, sources, extra)
        if out is not None:
            import pandas as pd
            frame = result.frame if result.proof is None else pd.concat(
                [result.frame, result.proof.assign(**{"pass": "proof " + result.proof["pass"]})], ignore_index=True)
            write_csv(frame, out / "gate.csv")
            write_markdown(frame, out / "gate.md", result.lines)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _conclude(frame: pd.DataFrame, against: str, lines: list[str], say: Say) -> GateResult:
    lines = lines + verdict.offender_lines(frame) + [verdict.summary_line(frame, against)]
    for line in lines[-(len(verdict.regressed(frame)) + len(verdict.unresolved(frame)) + 1):]:
        say(line)
    new = (verdict.judged(frame)["verdict"] == "new").any()  # a model the base lacks is new, not a failure
    passed = verdict.regressed(frame).empty and (not verdict.compared(frame).empty or new)
    return GateResult(frame, passed, lines, unresolved=not verdict.unresolved(frame).empty)


def _against_base(config: GateConfig, gate: _Gate, repo: Path, head_tree: Path, scratch: Path,
                  sources: tuple[str, ...], extra: tuple[str, ...]) -> GateResult:
    if config.base:
        base_rev, why = trees.resolve(repo, config.base), "given"
    elif (repo / config.record_dir).is_dir():
        base_rev, why = trees.default_base(repo, config.record_dir), f"the last commit that changed {config.record_dir}"
    else:
        base_rev, branch = trees.merge_base(repo)
        why = f"the merge base of HEAD and {branch}"
    base_tree = trees.base_tree(repo, base_rev, sources, scratch / "base")
    if extra:
        trees.copy_paths(repo, extra, base_tree)
    if config.measure == "instructions":
        return _count_against_base(config, gate, base_rev, why, base_tree, head_tree)
    header = (f"gate: base {base_rev[:12]} ({why}) against the working tree, paired rounds on this machine "
              f"({records.this_machine()}), {config.repeat} pass{'es' if config.repeat > 1 else ''}")
    gate.say(header)
    rule = verdict.rule(1 + config.fail_above, config.repeat)
    gate.say(rule)
    pairs: Pairs = {}
    skipped: dict[str, str] = {}
    for i in range(config.repeat):
        gate.paired_pass(base_tree, head_tree, {}, f"pass {i + 1}/{config.repeat}", None, i % 2 == 1, pairs, skipped,
                         config.repeat)
    frame = verdict.judge_pairs(pairs, config.fail_above, skipped, config.repeat)
    lines = [header, rule]
    if (repo / config.record_dir).is_dir():
        lines.append(_record_line(repo, config.record_dir, verdict.head_figures(pairs), config.fail_above))
        gate.say(lines[-1])
    result = _conclude(frame, f"base {base_rev[:12]}", lines, gate.say)
    if config.prove:
        _prove(config, gate, base_tree, head_tree, result)
    return result


def _count_against_base(config: GateConfig, gate: _Gate, base_rev: str, why: str, base_tree: Path,
                        head_tree: Path) -> GateResult:
    """Both sides counted by callgrind, case by case (convbench.gate.counted)."""
    header = (f"gate: base {base_rev[:12]} ({why}) against the working tree, instructions per call counted by "
              f"valgrind on this machine ({records.this_machine()})")
    rule = counted.rule(config.fail_above)
    for line in (header, rule):
        gate.say(line)
    if config.arch is not None:  # the cases are the specs': named here, without starting torch twice to list them
        names, skipped = _selected([model_case(s["arch"], s["batch_size"]).name for s in config.source["specs"]],
                                   config.select), {}
        todo = names
    else:
        base_names, head_names = (gate.names(gate.side(f"{label} listing", tree, {SLOW_ENV: None, FACTOR_ENV: None}),
                                             close=True) for label, tree in (("base", base_tree), ("head", head_tree)))
        names = _selected(list(head_names), config.select)
        skipped = {n: "not in the base's cases" for n in names if n not in base_names}
        todo = [n for n in names if n in base_names]
    plain = {SLOW_ENV: None, FACTOR_ENV: None}
    started = clock.now()
    found = counted.count_pass(base_tree, head_tree, todo, config.source, config.device, plain, plain, config.timeout,
                               gate.roots, on_benchmark=gate.progress)
    gate.say(f"counted: {len(todo)} benchmark{'' if len(todo) == 1 else 's'} on both sides in {clock.now() - started:.0f} s")
    frame = counted.judge_counts(found, config.fail_above, skipped)
    lines = [header, rule, *counted.offender_lines(frame), counted.summary_line(frame, f"base {base_rev[:12]}")]
    for line in lines[2:]:
        gate.say(line)
    failed = frame["verdict"].isin(["regressed", counted.FAILED]).any()
    result = GateResult(frame, not failed and (frame["verdict"].isin(["ok", counted.IMPROVED]).any()
                                               or (frame["verdict"] == "new").any()), lines)
    if config.prove:
        expected = sorted(n for n in frame.loc[frame["base_instructions"].notna() & frame["head_instructions"].notna(),
                                               "benchmark"] if config.prove in n)
        if not expected:
            raise UserError(f"--prove {config.prove!r} matches no benchmark counted on both sides")
        slow = {SLOW_ENV: config.prove, FACTOR_ENV: repr(config.prove_factor)}
        calls = counted.proof_calls(config.prove_factor)
        proof = counted.judge_counts(counted.count_pass(base_tree, head_tree, expected, config.source, config.device,
                                                        plain, slow, config.timeout, gate.roots, calls), config.fail_above)
        _proof_verdict(config, result, proof, expected, gate.say, lambda r: f"{r.benchmark} {r.ratio:.4f}x")
    return result


def _record_line(repo: Path, record_dir: str, head_mins: dict[str, float], fail_above: float) -> str:
    match, all_records = records.matching_record(repo / record_dir)
    if match is None:
        saved = "; ".join(f"{r.path.name} on {r.machine}" for r in all_records) or "none"
        return (f"record: not compared, it was saved on another machine kind ({saved}; this one: {records.this_machine()}); "
                "judging against the base measured now")
    frame = verdict.judge_mins({n: v for n, v in match.mins.items() if n in head_mins}, head_mins, fail_above)
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
    """Slow the benchmarks whose name contains `config.prove` by `prove_factor` in the candidate (its worker does):
    the gate must fail exactly those. A gate that lets this through is broken, and the run says so (exit 3)."""
    expected = sorted(n for n in verdict.compared(result.frame)["benchmark"] if config.prove in n)
    if not expected:
        raise UserError(f"--prove {config.prove!r} matches no benchmark that ran on both sides")
    pairs: Pairs = {}
    slow = {SLOW_ENV: config.prove, FACTOR_ENV: repr(config.prove_factor)}
    gate.paired_pass(base_tree, head_tree, slow, "proof", expected, False, pairs, {}, 1)
    frame = verdict.judge_pairs(pairs, config.fail_above, passes=1)
    _proof_verdict(config, result, frame, expected, gate.say,
                   lambda r: f"{r.benchmark} {r.ratio:.2f}x (interval {r.ci_low:.2f}-{r.ci_high:.2f})")


def _proof_verdict(config: GateConfig, result: GateResult, frame: pd.DataFrame, expected: list[str], say: Say,
                   shown_as: Callable) -> None:
    """Whether the proof bit exactly the cases it slowed, said in one line."""
    caught = set(verdict.regressed(frame)["benchmark"])
    result.proof, result.proof_held = frame, caught == set(expected)
    shown = "; ".join(shown_as(r) for r in verdict.judged(frame).itertuples())
    size = f"{config.prove_factor:g}x"
    if result.proof_held:
        line = f"proof: a deliberate {size} slowdown fails the gate as it must: {shown}"
    else:
        line = f"proof FAILED: the gate let a deliberate {size} slowdown through: {shown}"
    result.lines.append(line)
    say(line)

"""`convbench gate --measure instructions`: each case of each side counted by callgrind, in a process of its own
from its own tree (convbench.measure.instructions), both sides of a case at once. The figure is instructions per
call: the same however busy the runner is, so a change of 1% is a change of the code.

The rule: a benchmark regresses when its instructions per call grow by more than the limit (default 1%), and is
reported improved when they fall by more than it. A case the base cannot run is new; one the candidate cannot run
(a crash, a hang past the time-out, an instruction valgrind does not know) is a failure of the candidate, said in
one line and a row, and the other cases are still judged."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from convbench.gate.lockstep import WORKER_MODULE, copy_worker, side_env
from convbench.gate.worker import model_case
from convbench.measure import instructions

if TYPE_CHECKING:
    import pandas as pd

IMPROVED, FAILED = "improved", "failed"


@dataclass(frozen=True)
class Counted:
    """One side's count of a case: instructions per call (None where it could not be counted) and what to say."""
    figure: int | None
    note: str = ""


Counts = dict[str, tuple[Counted, Counted]]   # benchmark -> (base, head)


MAX_PROOF_CALLS = 20


def proof_calls(factor: float) -> int | None:
    """The fewest calls N (at most MAX_PROOF_CALLS) over which `factor` is a whole number of extra runs of the case
    (1.25: 4 calls, one run more), so that the proof adds exactly that work; None where there is none."""
    for n in range(1, MAX_PROOF_CALLS + 1):
        if abs(n * (factor - 1) - round(n * (factor - 1))) < 1e-9:
            return n
    return None


def rule(fail_above: float) -> str:
    return (f"rule: a benchmark regresses when its instructions per call (counted by valgrind's callgrind, one thread, "
            f"warm-up outside the count) grow by more than {fail_above:.2%} over the base's, and is reported improved "
            f"when they fall by more than that; the figure is the same however busy this runner is")


def counting_argv(source: dict, device: str, name: str, calls: int, module: str = WORKER_MODULE) -> list[str]:
    """The worker counting one case: the copy in a side's tree (WORKER_MODULE), or the installed one."""
    return [sys.executable, "-m", module, json.dumps(source), device, "--count", name, str(calls)]


def count_pass(base_tree: Path, head_tree: Path, names: list[str], source: dict, device: str,
               base_env: dict[str, str | None], head_env: dict[str, str | None], timeout: float,
               import_roots: tuple[str, ...] = (".",), calls: int = instructions.CALLS,
               on_benchmark: Callable[[str], None] | None = None) -> Counts:
    """Every case counted on both sides, the two sides of a case at once."""
    found: Counts = {}
    for tree in (base_tree, head_tree):
        copy_worker(tree)
    for name in names:
        if on_benchmark:
            on_benchmark(name)
        sides = []
        for tree, env in ((base_tree, base_env), (head_tree, head_env)):
            try:
                sides.append(instructions.Counting(counting_argv(source, device, name, calls), str(tree),
                                                   side_env(tree, env, import_roots), calls, timeout))
            except OSError as exc:
                sides.append(Counted(None, f"could not start valgrind: {exc}"))
        results = []
        for side in sides:
            if isinstance(side, Counted):
                results.append(side)
                continue
            try:
                figure, printed = side.result()
                results.append(Counted(figure, _threads_note(printed)))
            except instructions.CountFailed as exc:
                results.append(Counted(None, str(exc)))
        found[name] = (results[0], results[1])
    return found


def _threads_note(printed: str) -> str:
    try:
        threads = int(json.loads(printed).get("threads", 1))
    except (ValueError, AttributeError, TypeError):
        return ""
    return (f"the case left {threads - 1} thread(s) of its own running: under valgrind they take turns, and its count "
            "may vary between runs") if threads > 1 else ""


def judge_counts(counts: Counts, fail_above: float, skipped: dict[str, str] | None = None) -> pd.DataFrame:
    import pandas as pd

    from convbench.gate.verdict import GATE_COLUMNS, JUDGED
    limit = 1 + fail_above
    rows = []
    for name in sorted(counts):
        (base, base_note), (head, head_note) = ((side.figure, side.note) for side in counts[name])
        row = {"benchmark": name, "pass": JUDGED, "base_min": math.nan, "head_min": math.nan, "ratio": math.nan,
               "ci_low": math.nan, "ci_high": math.nan, "pairs": 0, "limit": limit, "measure": "instructions",
               "base_instructions": base, "head_instructions": head}
        if head is None:
            row.update(verdict=FAILED, note=f"the candidate cannot run it: {head_note}")
        elif base is None:
            row.update(verdict="new", note=f"the base cannot run it: {base_note}")
        else:
            ratio = head / base
            verdict = "regressed" if ratio > limit else IMPROVED if ratio < 1 / limit else "ok"
            row.update(ratio=ratio, verdict=verdict, note="; ".join(filter(None, dict.fromkeys([base_note, head_note]))))
        rows.append(row)
    for name, why in sorted((skipped or {}).items()):
        rows.append({"benchmark": name, "pass": JUDGED, "limit": limit, "measure": "instructions", "verdict": "new",
                     "note": why})
    frame = pd.DataFrame(rows, columns=GATE_COLUMNS)
    return frame.astype({"base_instructions": "Int64", "head_instructions": "Int64"})


def offender_lines(frame: pd.DataFrame) -> list[str]:
    lines = []
    for r in frame.itertuples():
        if r.verdict == "regressed":
            lines.append(f"REGRESSED {r.benchmark}  instructions per call {int(r.base_instructions):,} -> "
                         f"{int(r.head_instructions):,}  ratio {r.ratio:.4f}x > {r.limit:.4f}x")
        elif r.verdict == FAILED:
            lines.append(f"FAILED {r.benchmark}: {r.note}")
    return lines


def summary_line(frame: pd.DataFrame, against: str) -> str:
    both = frame[frame["verdict"].isin(["ok", "regressed", IMPROVED])]
    bad, failed = frame[frame["verdict"] == "regressed"], frame[frame["verdict"] == FAILED]
    better = frame[frame["verdict"] == IMPROVED]
    new = frame[frame["verdict"] == "new"]
    limit = frame["limit"].iloc[0] if len(frame) else math.nan
    extra = (f", {len(better)} improved" if len(better) else "") + (f", {len(new)} new" if len(new) else "")
    if both.empty and failed.empty:
        return f"gate: {'PASS' if len(new) else 'FAIL'}, no benchmark was counted on both sides ({against}{extra})"
    count = f"{len(both) + len(failed)} benchmark{'s' if len(both) + len(failed) != 1 else ''}"
    if bad.empty and failed.empty:
        worst = both.loc[both["ratio"].idxmax()]
        return (f"gate: PASS, {count} within {limit - 1:.2%} more instructions per call than {against} (largest ratio "
                f"{worst['ratio']:.4f}x {worst['benchmark']}{extra})")
    worst = bad.loc[bad["ratio"].idxmax()] if len(bad) else None
    said = f"worst {worst['ratio']:.4f}x {worst['benchmark']}" if worst is not None else f"{len(failed)} failed"
    return (f"gate: FAIL, {len(bad) + len(failed)} of {count} regressed or failed against {against} "
            f"({said}{extra})")


def count_instructions(arch: str, batch_size: int = 1, input_shape: tuple[int, int, int] | None = None,
                       device: str = "cpu", calls: int = instructions.CALLS,
                       timeout: float = instructions.TIMEOUT_S) -> int:
    """Instructions per call of a model case's forward, counted by valgrind's callgrind exactly as `convbench gate
    --measure instructions` counts it (the gate's worker, one thread, warm-up outside the count). Raises
    convbench.measure.instructions.CountFailed with one line where valgrind is missing or the count fails."""
    case = model_case(arch, batch_size, input_shape, device)
    source = {"specs": [{"arch": arch, "batch_size": batch_size, "input_shape": case.input_shape, "rounds": 2}]}
    argv = counting_argv(source, device, case.name, calls, module="convbench.gate.worker")
    return instructions.count(argv, calls=calls, timeout=timeout)

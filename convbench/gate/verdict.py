"""Judging a candidate against a base.

Paired runs (the default): a benchmark's ratio is the median of its per-pair time ratios head / base over all
its passes, each pass a fresh pair of worker processes (a process's own slow or fast mode, seen with ResNeXt's
32-path form, then weighs once among several), with a distribution-free interval (convbench.stats) at the level
that keeps every look of the sequential design at 95% together (lockstep.look_level). The two rounds of a pair ran
moments apart on one core, so no reference is needed to cancel the machine. A benchmark
- is unresolved when two of its passes' intervals do not overlap: each pass's pair of processes ran at a speed of
  its own (seen on a 2-core VM: single passes of identical code at 0.39x and 2.49x), which no number of pairs
  within a pass can tell from a change of the code;
- regresses when its median ratio is above the limit and its interval lies above 1;
- is unresolved when it does not regress but its interval still reaches above the limit: the clock could not tell
  a regression of that size from noise on this machine, and the gate says so instead of passing it;
- is ok when its interval lies at or below the limit.
Against a record (no pairs to be had): the ratio of the fastest rounds in reference units, since load on a
shared machine only ever adds time and the fastest round is the figure both sides can reproduce.
`base_min` and `head_min` are always the fastest round in reference units (convbench.bench's protocol)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from convbench import stats
from convbench.gate.lockstep import LOOKS_PER_PASS, look_level, ratios

if TYPE_CHECKING:
    import pandas as pd

GATE_COLUMNS = ["benchmark", "pass", "base_min", "head_min", "ratio", "ci_low", "ci_high", "pairs", "limit", "verdict", "note",
                "measure", "base_instructions", "head_instructions"]
TIME = "time"  # the `measure` of a row judged by the clock (the other: instructions, convbench.gate.counted)
JUDGED = "judged"  # the `pass` of the row that decides: all passes' pairs together
UNRESOLVED = "unresolved"


def rule(limit: float, passes: int) -> str:
    """The rule that judges, in words, as the gate prints it."""
    over = f"all {passes} passes' pairs" if passes > 1 else "its pairs"
    level = look_level(passes)
    return (f"rule: a benchmark regresses when the median head/base ratio of {over} is above {limit:.2f}x and its "
            f"interval lies above 1, and is unresolved when that interval still reaches above {limit:.2f}x or two "
            f"passes' intervals do not overlap; a pass "
            f"runs a case's own rounds, then as many again (twice at most) while the interval straddles the limit, "
            f"every one of those {passes * LOOKS_PER_PASS} looks at {level:.2%} so that together they hold at 95%")


def _one_sided(name: str, base: float | None, head: float | None, limit: float, note: str = "") -> dict:
    return {"benchmark": name, "pass": JUDGED, "base_min": base, "head_min": head, "ratio": math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "pairs": 0, "limit": limit, "measure": TIME, "verdict": "new" if base is None else "gone", "note": note}


def in_reference_units(sample: tuple[float, float]) -> float:
    seconds, reference = sample
    return seconds / reference


def head_figures(pairs: dict[str, list]) -> dict[str, float]:
    return {name: min(in_reference_units(h) for got in passes for _, h in got) for name, passes in pairs.items()
            if any(passes)}


def judge_pairs(pairs: dict[str, list], fail_above: float, skipped: dict[str, str] | None = None,
                passes: int | None = None) -> pd.DataFrame:
    """Every pass of every benchmark (`pass` 1, 2, ...), then the row that judges it (`pass` "judged"). `passes`
    is the number the design planned (its looks set the level), by default the most any benchmark made."""
    import pandas as pd
    limit = 1 + fail_above
    planned = passes or max((len(p) for p in pairs.values()), default=1)
    level = look_level(planned)
    rows = []
    for name in sorted(pairs):
        done = [got for got in pairs[name] if got]
        bounds = []
        for i, got in enumerate(done, 1):
            lo, hi = stats.median_interval(ratios(got), level)
            bounds.append((lo, hi))
            rows.append({"benchmark": name, "pass": str(i), "base_min": min(in_reference_units(b) for b, _ in got),
                         "head_min": min(in_reference_units(h) for _, h in got), "ratio": stats.median(ratios(got)),
                         "ci_low": lo, "ci_high": hi, "pairs": len(got), "limit": limit, "measure": TIME, "verdict": "", "note": ""})
        pooled = [r for got in done for r in ratios(got)]
        ratio = stats.median(pooled)
        lo, hi = stats.median_interval(pooled, level)
        apart = _disjoint(bounds)
        if apart:
            decision = UNRESOLVED
            note = (f"its passes disagree ({apart}): each pass's processes ran at a speed of their own, which the "
                    "clock cannot tell from the code (more --repeat, a quieter runner, or --measure instructions)")
        elif ratio > limit and lo > 1:
            decision, note = "regressed", ""
        elif not hi <= limit:  # a NaN bound (too few pairs) is unresolved too
            decision = UNRESOLVED
            note = (f"{level:.2%} interval {lo:.2f}-{hi:.2f} reaches above {limit:.2f}x: a regression of that size "
                    "cannot be told from this machine's noise for this case (more --rounds, a quieter runner, or "
                    "--measure instructions)")
        else:
            decision, note = "ok", ""
        rows.append({"benchmark": name, "pass": JUDGED, "base_min": min(in_reference_units(b) for got in done for b, _ in got),
                     "head_min": min(in_reference_units(h) for got in done for _, h in got),
                     "ratio": ratio, "ci_low": lo, "ci_high": hi, "pairs": len(pooled), "limit": limit, "measure": TIME,
                     "verdict": decision, "note": note})
    rows += [_one_sided(name, None, math.nan, limit, why) for name, why in sorted((skipped or {}).items())]
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def _disjoint(bounds: list[tuple[float, float]]) -> str:
    """'pass 1 0.75-1.02, pass 2 1.23-1.55' where two passes' intervals do not overlap, else ''."""
    known = [(i, lo, hi) for i, (lo, hi) in enumerate(bounds, 1) if lo == lo and hi == hi]
    for i, lo_i, hi_i in known:
        for j, lo_j, hi_j in known:
            if hi_i < lo_j:
                return f"pass {i} {lo_i:.2f}-{hi_i:.2f}, pass {j} {lo_j:.2f}-{hi_j:.2f}"
    return ""


def judge_mins(base: dict[str, float], head: dict[str, float], fail_above: float) -> pd.DataFrame:
    import pandas as pd
    limit = 1 + fail_above
    rows = []
    for name in sorted(set(base) | set(head)):
        b, h = base.get(name), head.get(name)
        if b is None or h is None:
            rows.append(_one_sided(name, b, h, limit))
            continue
        ratio = h / b if b > 0 else math.inf
        rows.append({"benchmark": name, "pass": JUDGED, "base_min": b, "head_min": h, "ratio": ratio, "ci_low": math.nan,
                     "ci_high": math.nan,
                     "pairs": 0, "limit": limit, "measure": TIME, "verdict": "regressed" if ratio > limit else "ok", "note": ""})
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def judged(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["pass"] == JUDGED]


def regressed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["verdict"] == "regressed"]


def compared(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["verdict"].isin(["ok", "regressed", UNRESOLVED])]


def unresolved(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["verdict"] == UNRESOLVED]


def _ratio_text(r) -> str:
    ci = f" (interval {r.ci_low:.2f}-{r.ci_high:.2f})" if not math.isnan(r.ci_low) else ""
    return f"{r.ratio:.2f}x{ci}"


def offender_lines(frame: pd.DataFrame) -> list[str]:
    return ([f"REGRESSED {r.benchmark}  base {r.base_min:.3f}  head {r.head_min:.3f}  ratio {_ratio_text(r)} > {r.limit:.2f}x"
             for r in regressed(frame).itertuples()] +
            [f"UNRESOLVED {r.benchmark}  ratio {_ratio_text(r)}: {r.note}" for r in unresolved(frame).itertuples()])


def summary_line(frame: pd.DataFrame, against: str) -> str:
    both = compared(frame)
    new = judged(frame)[judged(frame)["verdict"] == "new"]
    if both.empty and len(new):
        return (f"gate: PASS, nothing to compare with {against}: {len(new)} new benchmark{'s' if len(new) > 1 else ''} "
                f"({', '.join(new['benchmark'])})")
    if both.empty:
        return f"gate: FAIL, no benchmark ran on both sides ({against})"
    bad = regressed(frame)
    worst = both.loc[both["ratio"].idxmax()]
    geomean = math.exp(sum(math.log(r) for r in both["ratio"]) / len(both))
    limit = both["limit"].iloc[0]
    extra = "".join(f", {n} {v}" for v, n in judged(frame)["verdict"].value_counts().items() if v in ("new", "gone"))
    count = f"{len(both)} benchmark{'s' if len(both) != 1 else ''}"
    vague = unresolved(frame)
    if bad.empty and len(vague):
        return (f"gate: UNRESOLVED, {len(vague)} of {count} could not be told within {limit:.2f}x of {against} on "
                f"this machine ({', '.join(vague['benchmark'])}); no regression shown")
    if bad.empty:
        return (f"gate: PASS, {count} within {limit:.2f}x of {against} "
                f"(largest ratio {worst['ratio']:.2f}x {worst['benchmark']}, geometric mean {geomean:.3f}x{extra})")
    return (f"gate: FAIL, {len(bad)} of {count} slower than {limit:.2f}x {against} "
            f"(worst {worst['ratio']:.2f}x {worst['benchmark']}, geometric mean {geomean:.3f}x{extra})")

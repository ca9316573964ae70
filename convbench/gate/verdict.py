"""Judging a candidate against a base.

Paired runs (the default): in each pass, a benchmark's ratio is the median of its per-pair time ratios
head / base, with a distribution-free 95% interval. The two rounds of a pair ran moments apart on one core, so
no reference is needed to cancel the machine (on the 2-core CI machine the reference-normalised ratio was the
noisier of the two). Each pass has its own pair of processes, and some benchmarks have slow and fast modes per
process (seen here: ResNeXt's 32-path form (a) at 1.29x and 1.37x in single passes of identical code), while a
real regression shows in every pass. So a benchmark regresses when its least-slowed pass does: median above
the limit and the interval above 1; that pass's figures are the ones reported.
Against a record (no pairs to be had): the ratio of the fastest rounds in reference units, since load on a
shared machine only ever adds time and the fastest round is the figure both sides can reproduce.
`base_min` and `head_min` are always the fastest round in reference units (suites/reference.py)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING


from convbench.measure.paired import median_ci

if TYPE_CHECKING:
    import pandas as pd

GATE_COLUMNS = ["benchmark", "pass", "base_min", "head_min", "ratio", "ci_low", "ci_high", "pairs", "limit", "verdict", "note"]
JUDGED = "judged"  # the `pass` of the row that decides: the least-slowed pass's figures


def rule(limit: float, passes: int) -> str:
    """The rule that judges, in words, as the gate prints it."""
    least = f"its least-slowed of {passes} passes" if passes > 1 else "its pass"
    return (f"rule: a benchmark regresses when {least} has a median head/base ratio above {limit:.2f}x with its 95% "
            f"interval above 1; each pass runs a case's own rounds, and up to {3}x as many while the interval "
            f"still straddles {limit:.2f}x")


def _one_sided(name: str, base: float | None, head: float | None, limit: float, note: str = "") -> dict:
    return {"benchmark": name, "pass": JUDGED, "base_min": base, "head_min": head, "ratio": math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "pairs": 0, "limit": limit, "verdict": "new" if base is None else "gone", "note": note}


def in_reference_units(sample: tuple[float, float]) -> float:
    seconds, reference = sample
    return seconds / reference


def head_figures(pairs: dict[str, list]) -> dict[str, float]:
    return {name: min(in_reference_units(h) for got in passes for _, h in got) for name, passes in pairs.items()
            if any(passes)}


def judge_pairs(pairs: dict[str, list], fail_above: float, skipped: dict[str, str] | None = None) -> pd.DataFrame:
    """Every pass of every benchmark (`pass` 1, 2, ...), then the row that judges it (`pass` "judged")."""
    import pandas as pd
    limit = 1 + fail_above
    rows = []
    for name in sorted(pairs):
        passes = [got for got in pairs[name] if got]
        figures = [median_ci([h[0] / b[0] for b, h in got]) for got in passes]
        for i, (got, (ratio, lo, hi)) in enumerate(zip(passes, figures), 1):
            rows.append({"benchmark": name, "pass": str(i), "base_min": min(in_reference_units(b) for b, _ in got),
                         "head_min": min(in_reference_units(h) for _, h in got), "ratio": ratio, "ci_low": lo,
                         "ci_high": hi, "pairs": len(got), "limit": limit, "verdict": "", "note": ""})
        ratio, lo, hi = min(figures)
        slower = ratio > limit and lo > 1
        note = f"least-slowed of {len(passes)} passes" if len(passes) > 1 else ""
        rows.append({"benchmark": name, "pass": JUDGED, "base_min": min(in_reference_units(b) for got in passes for b, _ in got),
                     "head_min": min(in_reference_units(h) for got in passes for _, h in got),
                     "ratio": ratio, "ci_low": lo, "ci_high": hi, "pairs": sum(map(len, passes)), "limit": limit,
                     "verdict": "regressed" if slower else "ok", "note": note})
    rows += [_one_sided(name, None, math.nan, limit, why) for name, why in sorted((skipped or {}).items())]
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


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
                     "pairs": 0, "limit": limit, "verdict": "regressed" if ratio > limit else "ok", "note": ""})
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def judged(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["pass"] == JUDGED]


def regressed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["verdict"] == "regressed"]


def compared(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["verdict"].isin(["ok", "regressed"])]


def _ratio_text(r) -> str:
    ci = f" (95% CI {r.ci_low:.2f}-{r.ci_high:.2f})" if not math.isnan(r.ci_low) else ""
    return f"{r.ratio:.2f}x{ci}"


def offender_lines(frame: pd.DataFrame) -> list[str]:
    return [f"REGRESSED {r.benchmark}  base {r.base_min:.3f}  head {r.head_min:.3f}  ratio {_ratio_text(r)} > {r.limit:.2f}x"
            for r in regressed(frame).itertuples()]


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
    if bad.empty:
        return (f"gate: PASS, {count} within {limit:.2f}x of {against} "
                f"(largest ratio {worst['ratio']:.2f}x {worst['benchmark']}, geometric mean {geomean:.3f}x{extra})")
    return (f"gate: FAIL, {len(bad)} of {count} slower than {limit:.2f}x {against} "
            f"(worst {worst['ratio']:.2f}x {worst['benchmark']}, geometric mean {geomean:.3f}x{extra})")

"""`convbench diff OLD NEW`: what changed between two result folders, the way benchstat compares two runs.

Rows are matched on the keys that identify a measurement; for each matched row the ratio new / old of a metric
gets a 95% interval from the two runs' raw samples, and is marked significant when the interval excludes 1: for a
median (p50, and the rates made of it) the distribution-free interval of convbench.stats.median_ratio_interval;
for the other statistics (mean, min, p90, p99) a percentile bootstrap (fixed seed, so the same folders always give
the same answer), which is approximate and said to be. Exact counts are compared exactly and
every change is listed. Folders written before samples were kept still diff, on medians alone, and say so."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from convbench import stats
from convbench.errors import UserError
from convbench.results import reader
from convbench.results.schema import ROWS_FILE

KINDS = ("profile", "compare")
KEYS = {
    "profile": ["model", "batch_size", "input_size", "dtype", "channels_last", "mode", "compile"],
    "compare": ["comparison", "case", "variant", "batch_size", "input_shape", "dtype", "channels_last", "mode"],
}
EXACT = ["params", "macs", "acts", "saved_bytes", "saved_act_bytes"]
# Metrics whose samples are per-iteration latencies; `per` says how the metric scales with latency.
FROM_LATENCY = {"latency_ms_p50": 1, "latency_ms_mean": 1, "latency_ms_min": 1, "latency_ms_p90": 1, "latency_ms_p99": 1,
                "throughput_img_s": -1, "achieved_tflops": -1}
NOT_METRICS = {"input_size", "batch_size", "row_id", "timed_iters", "pairs", "steps", "nproc"}  # settings, not results
HIGHER_IS_BETTER = {"throughput_img_s", "achieved_tflops", "measured_ratio_inverse"}
BOOTSTRAP = 2000
SEED = 0


@dataclass
class Folder:
    path: Path
    kind: str
    rows: pd.DataFrame
    samples: pd.DataFrame | None
    env: dict

    @property
    def device_kind(self) -> set[str]:
        import pandas as pd
        return {str(d).split(":")[0] for d in self.rows.get("device", pd.Series(dtype=str)).dropna()}


def load_folder(path: Path | str, kind: str | None = None) -> Folder:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if not path.is_dir():
        raise UserError(f"{path} is a file; diff takes two results folders (each holding profile.csv or compare.csv)")
    held = [k for k in KINDS if (path / ROWS_FILE[k]).exists()]
    found = [k for k in held if kind is None or k == kind]
    if not found and held:
        raise UserError(f"{path} is a {held[0]} run and the other folder a {kind} run: diff compares runs of one kind")
    if not found:
        raise UserError(f"{path} holds no profile.csv or compare.csv")
    chosen = found[0]
    rows = reader.read_table(path / ROWS_FILE[chosen], chosen)
    samples = reader.read_samples(path)
    env = reader.read_env(path)
    return Folder(path, chosen, rows, samples, env)


def match_keys(old: Folder, new: Folder, on: list[str] | None) -> list[str]:
    if on:
        missing = [k for k in on if k not in old.rows.columns or k not in new.rows.columns]
        if missing:
            raise UserError(f"--on names {', '.join(missing)}, which is not a column of both folders")
        return list(on)
    keys = [k for k in KEYS[old.kind] if k in old.rows.columns and k in new.rows.columns]
    if keys and "mode" in keys and "compile" in keys:
        keys.remove("compile")
    # The same GPU model is part of what identifies a measurement; across kinds (cpu vs cuda) or models the
    # user diffs on purpose with --on.
    if old.device_kind == new.device_kind and "device_name" in old.rows.columns and "device_name" in new.rows.columns:
        keys.append("device_name")
    return keys


def _key_text(values) -> str:
    return ", ".join(str(v) for v in values)


def _samples_for(folder: Folder, row_id) -> np.ndarray | None:
    if folder.samples is None or row_id is None or (isinstance(row_id, float) and math.isnan(row_id)):
        return None
    values = folder.samples.loc[folder.samples["row_id"] == int(row_id), "latency_ms"].dropna().to_numpy(float)
    return values if len(values) else None


# The statistic of the samples each latency metric is: the interval is bootstrapped for that statistic, so that
# it holds the ratio it is printed beside (a ratio of minima with an interval of medians could lie outside it).
STATISTICS = {
    "latency_ms_p50": lambda a, axis=None: np.median(a, axis=axis),
    "latency_ms_mean": lambda a, axis=None: np.mean(a, axis=axis),
    "latency_ms_min": lambda a, axis=None: np.min(a, axis=axis),
    "latency_ms_p90": lambda a, axis=None: np.percentile(a, 90, axis=axis),
    "latency_ms_p99": lambda a, axis=None: np.percentile(a, 99, axis=axis),
    "throughput_img_s": lambda a, axis=None: np.median(a, axis=axis),    # batch / the median latency
    "achieved_tflops": lambda a, axis=None: np.median(a, axis=axis),
}


def bootstrap_ratio(old: np.ndarray, new: np.ndarray, per: int, seed: int = SEED,
                    statistic=STATISTICS["latency_ms_p50"]) -> tuple[float, float, float]:
    """Ratio new / old of a statistic of the latencies (median by default; ^per, -1 for a rate), with a 95%
    percentile-bootstrap interval of that same statistic."""
    rng = np.random.default_rng(seed)
    old_stats = statistic(rng.choice(old, (BOOTSTRAP, len(old))), axis=1)
    new_stats = statistic(rng.choice(new, (BOOTSTRAP, len(new))), axis=1)
    ratios = (new_stats / old_stats) ** per
    point = (statistic(new) / statistic(old)) ** per
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(point), float(lo), float(hi)


MEDIANS = {"latency_ms_p50", "throughput_img_s", "achieved_tflops"}


def sample_interval(old: np.ndarray, new: np.ndarray, per: int, metric: str) -> tuple[float, float]:
    """The 95% interval of the ratio new / old of `metric` (^per) from the two runs' latencies."""
    if metric in MEDIANS:
        lo, hi = stats.median_ratio_interval(old.tolist(), new.tolist())
        return (lo ** per, hi ** per) if per > 0 else (hi ** per, lo ** per)
    _, lo, hi = bootstrap_ratio(old, new, per, statistic=STATISTICS[metric])
    return lo, hi


@dataclass
class DiffResult:
    old: Folder
    new: Folder
    keys: list[str]
    metric: str
    rows: pd.DataFrame                     # matched rows: keys, old, new, ratio, ci, mark
    exact: pd.DataFrame                    # changed exact counts: keys, column, old, new, difference
    added: pd.DataFrame
    removed: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def geomean(self) -> float:
        ratios = self.rows["ratio"].dropna()
        ratios = ratios[ratios > 0]
        return float(np.exp(np.log(ratios).mean())) if len(ratios) else math.nan

    def worse(self, fail_above: float) -> pd.DataFrame:
        """Significant changes for the worse beyond `fail_above` (for throughput, a drop below 1 / (1 + X))."""
        sig = self.rows[self.rows["mark"] == "*"]
        if self.metric in HIGHER_IS_BETTER:
            return sig[sig["ratio"] < 1 / (1 + fail_above)]
        return sig[sig["ratio"] > 1 + fail_above]


def diff(old: Path | str | Folder, new: Path | str | Folder, on: list[str] | None = None,
         metric: str = "latency_ms_p50") -> DiffResult:
    import pandas as pd
    old_f = old if isinstance(old, Folder) else load_folder(old)
    new_f = new if isinstance(new, Folder) else load_folder(new, old_f.kind)
    if old_f.kind != new_f.kind:
        raise UserError(f"{old_f.path} is a {old_f.kind} run but {new_f.path} is a {new_f.kind} run")
    if metric not in old_f.rows.columns or metric not in new_f.rows.columns:
        raise UserError(f"--metric {metric!r} is not a column of both folders")
    figures = [c for c in reader.FIGURES[old_f.kind] if c not in NOT_METRICS]
    if metric not in figures:
        raise UserError(f"--metric {metric!r} is not a figure a ratio can be taken of; choose from "
                        f"{', '.join(c for c in figures if c in old_f.rows.columns)}")
    keys = match_keys(old_f, new_f, on)
    a, b = old_f.rows.copy(), new_f.rows.copy()
    for frame in (a, b):
        for k in keys:
            frame[k] = frame[k].astype(str)
    dup = [f for f, frame in ((old_f, a), (new_f, b)) if frame.duplicated(keys).any()]
    if dup:
        raise UserError(f"the keys {', '.join(keys)} do not identify one row in {dup[0].path}; add columns with --on")
    merged = a.merge(b, on=keys, how="outer", suffixes=("_old", "_new"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    if both.empty:
        raise UserError(_no_common_rows(a, b, keys, old_f, new_f))
    notes = []
    if old_f.samples is None or new_f.samples is None:
        without = [str(f.path) for f in (old_f, new_f) if f.samples is None]
        notes.append(f"no samples in {' and '.join(without)}: ratios of medians, without intervals")
    notes += side_by_side_notes(both)
    per = FROM_LATENCY.get(metric)
    out_rows = []
    for _, r in both.iterrows():
        o, n = r.get(f"{metric}_old"), r.get(f"{metric}_new")
        row = {k: r[k] for k in keys}
        row.update(old=o, new=n, ratio=math.nan, ci_low=math.nan, ci_high=math.nan, mark="")
        if _number(o) and _number(n) and o != 0:
            row["ratio"] = n / o
            old_s, new_s = _samples_for(old_f, r.get("row_id_old")), _samples_for(new_f, r.get("row_id_new"))
            if per is not None and old_s is not None and new_s is not None:
                row["ci_low"], row["ci_high"] = sample_interval(old_s, new_s, per, metric)
                if not math.isnan(row["ci_low"]):
                    row["mark"] = "*" if row["ci_low"] > 1 or row["ci_high"] < 1 else "~"
        out_rows.append(row)
    exact = []
    for _, r in both.iterrows():
        for col in EXACT:
            o, n = r.get(f"{col}_old"), r.get(f"{col}_new")
            if _number(o) and _number(n) and int(o) != int(n):
                exact.append({**{k: r[k] for k in keys}, "column": col, "old": int(o), "new": int(n), "difference": int(n) - int(o)})
    added = merged.loc[merged["_merge"] == "right_only", keys]
    removed = merged.loc[merged["_merge"] == "left_only", keys]
    return DiffResult(old_f, new_f, keys, metric, pd.DataFrame(out_rows),
                      pd.DataFrame(exact, columns=[*keys, "column", "old", "new", "difference"]), added, removed, notes)


# Context that changes a timing without changing what is measured: said when the two runs differ in it.
CONDITIONS = {"shards_on_host": "sweeps measuring on the host at once", "threads": "torch threads",
              "busy": "rows timed on a busy machine"}


def side_by_side_notes(both: pd.DataFrame) -> list[str]:
    """One line per condition the two runs' matched rows differ in: shards run side by side on one host share its
    CPU, PCIe and power, so a ratio across them measures the neighbours as much as the code."""
    notes = []
    for col, what in CONDITIONS.items():
        if f"{col}_old" not in both or f"{col}_new" not in both:
            continue
        old, new = (sorted({_as_text(v) for v in both[f"{col}_{side}"].dropna()}) for side in ("old", "new"))
        if old and new and old != new:
            notes.append(f"{what}: {', '.join(old)} in OLD, {', '.join(new)} in NEW; read the ratios with that in mind")
    return notes


def _as_text(value) -> str:
    """A condition's value as one text whatever type a CSV gave it back as: 2, 2.0 and '2' are all '2'."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, str) and value.lower() in ("true", "false")):
        return str(value).capitalize()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(number)


def _number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not (isinstance(v, float) and math.isnan(v))


def _no_common_rows(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], old: Folder, new: Folder) -> str:
    empty = [f.path / ROWS_FILE[f.kind] for f, rows in ((old, a), (new, b)) if not len(rows)]
    if empty:
        return f"{' and '.join(map(str, empty))} {'holds' if len(empty) == 1 else 'hold'} no rows: nothing to compare"
    differing = []
    for k in keys:
        va, vb = set(a[k]), set(b[k])
        if not va & vb:
            differing.append(f"{k} is {_key_text(sorted(va)[:3])} in OLD but {_key_text(sorted(vb)[:3])} in NEW")
    why = "; ".join(differing) or "no combination of the keys appears in both"
    return (f"{old.path} and {new.path} have no rows in common ({why}); to diff across a setting on purpose, "
            f"match on fewer columns with --on, e.g. --on {','.join(k for k in keys if k not in [d.split(' ')[0] for d in differing])}")

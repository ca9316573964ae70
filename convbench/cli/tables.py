"""Rich tables for the console: a readable subset of a run's columns, with units in the headers."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return "-"
    return format(v, fmt)


def _mib(v: Any) -> str:
    return _num(_scaled(v, 2**20), ".1f")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def status_cell(r: dict[str, Any], notes: list[str], label: str) -> str:
    """'ok', or the status with a note number; the note itself goes under the table."""
    if r["status"] == "ok":
        return "ok"
    notes.append(f"{label} ({r['status']}): {r['error']}")
    return f"{r['status']} [{len(notes)}]"


def profile_table(df: pd.DataFrame, metrics: str) -> tuple[Table, list[str]]:
    """Params in millions, MACs in G per image, memory in MiB; '~' marks a noisy latency. Returns the table
    and the notes (one per row that is not ok) to print under it."""
    show_mode = "mode" in df and (df["mode"].nunique() > 1 or (df["mode"].dropna() != "eager").any())
    show_busy = metrics == "all" and "gpu_busy" in df and df["gpu_busy"].notna().any()
    columns = ["model", "batch"] + (["mode"] if show_mode else []) + ["params M", "GMACs", "saved MiB"]
    if metrics == "all":
        columns += ["p50 ms", "IQR ms", "img/s", "TFLOP/s"] + (["GPU busy"] if show_busy else []) + ["infer MiB", "train MiB"]
    columns.append("status")
    device = df["device_name"].iloc[0] if len(df) else ""
    dtype = df["dtype"].iloc[0] if len(df) else ""
    table = Table(title=f"{device}, {dtype}", title_justify="left", box=None, pad_edge=False, collapse_padding=True,
                  header_style="bold underline")
    for name in columns:
        table.add_column(name, justify="left" if name in ("model", "status") else "right", no_wrap=True)
    notes: list[str] = []
    for r in df.to_dict("records"):
        cells = [r["model"], str(r["batch_size"])] + ([str(r["mode"])] if show_mode else []) + [
            _num(_scaled(r["params"], 1e6), ".2f"), _num(_scaled(r["macs"], 1e9), ".3f"), _mib(r["saved_act_bytes"])]
        if metrics == "all":
            noisy = "~" if r.get("noisy") is True else ""
            cells += [_num(r["latency_ms_p50"], ".2f") + noisy, _num(r["latency_ms_iqr"], ".2f"), _num(r["throughput_img_s"], ".1f"),
                      _num(r["achieved_tflops"], ".3f")]
            if show_busy:
                cells.append(_num(r["gpu_busy"], ".0%") + ("!" if r.get("launch_bound") is True else ""))
            cells += [_mib(r["peak_mem_infer_bytes"]), _mib(r["peak_mem_train_bytes"])]
        cells.append(status_cell(r, notes, f"{r['model']} b{r['batch_size']}"))
        table.add_row(*cells)
    return table, notes


def closing_line(df: pd.DataFrame, path: str) -> str:
    """'37 rows: 36 ok, 1 partial (notes above) -> DIR/profile.csv'."""
    counts = df["status"].value_counts()
    parts = [f"{counts[s]} {s}" for s in ("ok", "partial", "oom", "error", "diverged") if s in counts]
    noted = " (notes above)" if len(df) - counts.get("ok", 0) else ""
    return f"{plural(len(df), 'row')}: {', '.join(parts)}{noted} -> {path}"


NOISY_LEGEND = "~ after a latency: noisy, its IQR is more than 10% of its median"
LAUNCH_LEGEND = "! after GPU busy: launch-bound, the GPU works less than half of each forward; compare modes, not these latencies"


def _scaled(v: Any, unit: float) -> Any:
    return v / unit if isinstance(v, (int, float)) else v


def _ratio_cell(v: Any) -> str:
    return _num(v, ".3f")


def compare_tables(df: pd.DataFrame) -> tuple[list[Table], list[str]]:
    """One table per case: claim, count and measurement side by side; notes for rows that are not ok."""
    tables, notes = [], []
    for (comparison, case, bs), group in df.groupby(["comparison", "case", "batch_size"], sort=False):
        first = group.iloc[0]
        mode = f", {first['mode']}" if first.get("mode", "eager") != "eager" else ""
        table = Table(title=f"{comparison} / {case} — {first['input_shape']}, batch {bs}, {first['device_name']} {first['dtype']}{mode}",
                      caption=f"claim: {first['claim']}", title_justify="left", caption_justify="left")
        device = "device_ratio" in group and group["device_ratio"].notna().any()
        columns = ["variant", "params", "GMACs", "claimed", "counted", "measured (95% CI)"] + (["device", "GPU busy"] if device else [])
        for col in columns + ["p50 ms", "saved act", "verdict"]:
            table.add_column(col, justify="left" if col in ("variant", "verdict") else "right", no_wrap=col != "verdict")
        for r in group.to_dict("records"):
            measured = _ratio_cell(r["measured_ratio"])
            if r["variant"] != r["baseline"] and isinstance(r["ratio_ci_low"], float) and not math.isnan(r["ratio_ci_low"]):
                measured += f" ({r['ratio_ci_low']:.2f}-{r['ratio_ci_high']:.2f})"
            verdict = r["verdict"] if r["status"] == "ok" else status_cell(r, notes, f"{case}: {r['variant']} b{bs}")
            if isinstance(r.get("max_abs_diff"), float) and not math.isnan(r["max_abs_diff"]):
                verdict += f"; same output as baseline within {r['max_abs_diff']:.1e}"
            extra = [_ratio_cell(r["device_ratio"]), _num(r["gpu_busy"], ".0%")] if device else []
            table.add_row(r["variant"], _num(r["params"], ","), _num(_scaled(r["macs"], 1e9), ".4f"), _ratio_cell(r["claimed_ratio"]),
                          _ratio_cell(r["counted_ratio"]), measured, *extra, _num(r["latency_ms_p50"], ".2f"),
                          _ratio_cell(r["saved_act_ratio"]), verdict)
        tables.append(table)
    return tables, notes


def busy_warning(df: pd.DataFrame, label) -> str | None:
    """One line naming the rows timed while other processes used the machine, or None."""
    if "busy" not in df:
        return None
    busy = df[df["busy"].astype(str) == "True"]
    if busy.empty:
        return None
    names = [label(r) for r in busy.to_dict("records")]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    worst = float(busy["host_busy"].max())
    return (f"warning: {len(names)} row{'s' if len(names) != 1 else ''} timed while other processes used up to {worst:.0%} of "
            f"the CPU (busy): {shown}; rerun on a quiet machine")

"""Rich tables for the console: a readable subset of a run's columns, with units in the headers."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return "-"
    return format(v, fmt)


def _mib(v: Any) -> str:
    return _num(_scaled(v, 2**20), ".1f")


def profile_table(df: pd.DataFrame, metrics: str) -> Table:
    """Params in millions, MACs in G per image, memory in MiB; '~' marks a noisy latency."""
    columns = ["model", "batch", "params M", "GMACs", "saved MiB"]
    if metrics == "all":
        columns += ["p50 ms", "IQR ms", "img/s", "TFLOP/s", "infer MiB", "train MiB"]
    columns.append("status")
    device = df["device_name"].iloc[0] if len(df) else ""
    dtype = df["dtype"].iloc[0] if len(df) else ""
    table = Table(title=f"{device}, {dtype}", title_justify="left", pad_edge=False, collapse_padding=True)
    width = max([5] + [len(str(m)) for m in df["model"]])
    for name in columns:
        table.add_column(name, justify="left" if name in ("model", "status") else "right",
                         min_width=width if name == "model" else None, no_wrap=name == "model")
    for r in df.to_dict("records"):
        cells = [r["model"], str(r["batch_size"]), _num(_scaled(r["params"], 1e6), ".2f"), _num(_scaled(r["macs"], 1e9), ".3f"),
                 _mib(r["saved_act_bytes"])]
        if metrics == "all":
            noisy = "~" if r.get("noisy") is True else ""
            cells += [_num(r["latency_ms_p50"], ".2f") + noisy, _num(r["latency_ms_iqr"], ".2f"), _num(r["throughput_img_s"], ".1f"),
                      _num(r["achieved_tflops"], ".3f"), _mib(r["peak_mem_infer_bytes"]), _mib(r["peak_mem_train_bytes"])]
        cells.append(r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}")
        table.add_row(*cells)
    return table


def _scaled(v: Any, unit: float) -> Any:
    return v / unit if isinstance(v, (int, float)) else v


def _ratio_cell(v: Any) -> str:
    return _num(v, ".3f")


def compare_tables(df: pd.DataFrame) -> list[Table]:
    """One table per case: claim, count and measurement side by side."""
    tables = []
    for (comparison, case, bs), group in df.groupby(["comparison", "case", "batch_size"], sort=False):
        first = group.iloc[0]
        table = Table(title=f"{comparison} / {case} — {first['input_shape']}, batch {bs}, {first['device_name']} {first['dtype']}",
                      caption=f"claim: {first['claim']}", title_justify="left", caption_justify="left")
        for col in ("variant", "params", "GMACs", "claimed", "counted", "measured (95% CI)", "p50 ms", "saved act", "verdict"):
            table.add_column(col, justify="left" if col in ("variant", "verdict") else "right", no_wrap=col != "verdict")
        for r in group.to_dict("records"):
            measured = _ratio_cell(r["measured_ratio"])
            if r["variant"] != r["baseline"] and isinstance(r["ratio_ci_low"], float) and not math.isnan(r["ratio_ci_low"]):
                measured += f" ({r['ratio_ci_low']:.2f}-{r['ratio_ci_high']:.2f})"
            verdict = r["verdict"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
            if isinstance(r.get("max_abs_diff"), float) and not math.isnan(r["max_abs_diff"]):
                verdict += f"; same output as baseline within {r['max_abs_diff']:.1e}"
            table.add_row(r["variant"], _num(r["params"], ","), _num(_scaled(r["macs"], 1e9), ".4f"), _ratio_cell(r["claimed_ratio"]),
                          _ratio_cell(r["counted_ratio"]), measured, _num(r["latency_ms_p50"], ".2f"), _ratio_cell(r["saved_act_ratio"]), verdict)
        tables.append(table)
    return tables


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

"""What the commands print: tables that fit the terminal with every figure whole (convbench.cli.fit), the notes
under them, and the closing line. Counts are shown in units that fit (112, 8.45k, 11.7M, 1.81G)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

from convbench.cli.fit import Column, left_out_line, mib, num, plural, say, si, table, wrap
from convbench.run.compare import CPU_MEMORY_NOTE
from convbench.units import missing, percent

if TYPE_CHECKING:
    import pandas as pd

NOISY_LEGEND = "~ after a latency: noisy, its IQR is more than 10% of its median"
BUSY_LEGEND = "* after a time: measured while other processes used over 10% of the CPU (busy); read it with care"
ABOVE_PEAK_LEGEND = "? after % peak: above this machine's measured peak, which cannot be: its note says why"
PEAK_LEGEND = ("% peak: achieved FLOP/s over this machine's measured peak (convbench ceiling); m: memory-bound at the "
               "row's estimated intensity, where the bandwidth ceiling is the one that applies")
LAUNCH_LEGEND = "! after GPU busy: launch-bound, the GPU works less than half of each forward; compare modes, not these latencies"


def status_cell(r: dict[str, Any], notes: list[str], label: str) -> str:
    """'ok', or the status with a note number; the note itself goes under the table."""
    if r["status"] == "ok":
        return "ok"
    notes.append(f"{label} ({r['status']}): {r['error']}")
    return f"{r['status']} [{len(notes)}]"


def print_notes(console: Console, notes: list[str]) -> None:
    for i, note in enumerate(notes, 1):
        say(console, f"[{i}] {note}", style=None)


def _is(value: Any) -> bool:
    return value is True or value == "True"


def busy_mark(r: dict[str, Any]) -> str:
    return "*" if _is(r.get("busy")) else ""


def share_cell(value: Any, suffix: str = "") -> str:
    """A share of peak, marked when it is above 100% (the row's note says why it cannot be taken as it is)."""
    cell = percent(value) + suffix
    return cell + "?" if not missing(value) and float(value) > 1 else cell


def legends(console: Console, frame: pd.DataFrame, shown: list[Column], busy_headers: tuple[str, ...],
            share_headers: tuple[str, ...], share_column: str) -> None:
    """The legend of each mark a shown column carries."""
    headers = {c.header for c in shown}
    if headers & set(busy_headers) and "busy" in frame and frame["busy"].astype(str).eq("True").any():
        say(console, BUSY_LEGEND)
    if headers & set(share_headers) and share_column in frame:
        import pandas as pd
        if (pd.to_numeric(frame[share_column], errors="coerce") > 1).any():
            say(console, ABOVE_PEAK_LEGEND)


def profile_columns(df: pd.DataFrame, metrics: str) -> tuple[list[Column], list[str]]:
    """The profile table's columns, ranked (0: always shown), and the notes for rows that are not ok."""
    rows = df.to_dict("records")
    show_mode = "mode" in df and (df["mode"].nunique() > 1 or (df["mode"].dropna() != "eager").any())
    timed = metrics == "all" and "latency_ms_p50" in df and df["latency_ms_p50"].notna().any()
    show_busy = timed and "gpu_busy" in df and df["gpu_busy"].notna().any()
    notes: list[str] = []
    columns = [Column("model", 0, "left", [str(r["model"]) for r in rows]),
               Column("batch", 0, cells=[str(r["batch_size"]) for r in rows])]
    if show_mode:
        columns.append(Column("mode", 0, "left", [str(r.get("mode") or "") for r in rows]))
    if "input_shape" in df and df["input_shape"].nunique() > 1:  # a sweep that mixes input sizes shows each
        columns.append(Column("input", 3 if timed else 1, cells=[input_cell(str(r.get("input_shape") or "")) for r in rows]))
    columns += [Column("params", 2 if timed else 0, cells=[si(r.get("params")) for r in rows]),
                Column("MACs/img", 1 if timed else 0, cells=[si(r.get("macs")) for r in rows])]
    if "instructions" in df and df["instructions"].notna().any():
        columns += [Column("instr/img", 0, cells=[si(r.get("instructions")) for r in rows]),
                    Column("instr/MAC", 0, cells=[num(r.get("instructions_per_mac"), ".3f") for r in rows])]
    if not timed:
        columns += [Column("acts/img", 2, cells=[si(r.get("acts")) for r in rows]),
                    Column("saved MiB", 1, cells=[mib(r.get("saved_act_bytes")) for r in rows])]
    else:
        columns += [
            Column("p50 ms", 0, cells=[num(r.get("latency_ms_p50"), ".2f") + ("~" if _is(r.get("noisy")) else "") + busy_mark(r)
                                       for r in rows]),
            Column("img/s", 1, cells=[num(r.get("throughput_img_s"), ",.1f") for r in rows]),
        ]
        if show_busy:
            columns.append(Column("GPU busy", 1, cells=[num(r.get("gpu_busy"), ".0%") + ("!" if _is(r.get("launch_bound")) else "")
                                                         for r in rows]))
        if "pct_peak" in df and df["pct_peak"].notna().any():
            columns.append(Column("% peak", 1, cells=[share_cell(r.get("pct_peak"), "m" if r.get("bound") == "memory" else "")
                                                       for r in rows]))
        columns += [Column("TFLOP/s", 3, cells=[num(r.get("achieved_tflops"), ".3f") for r in rows]),
                    Column("IQR ms", 4, cells=[num(r.get("latency_ms_iqr"), ".2f") for r in rows]),
                    Column("train MiB", 3, cells=[mib(r.get("peak_mem_train_bytes")) for r in rows]),
                    Column("infer MiB", 4, cells=[mib(r.get("peak_mem_infer_bytes")) for r in rows]),
                    Column("saved MiB", 5, cells=[mib(r.get("saved_act_bytes")) for r in rows])]
    columns.append(Column("status", 0, "left", [status_cell(r, notes, f"{r['model']} b{r['batch_size']}"
                                                            + (f" {r['mode']}" if show_mode else "")) for r in rows]))
    return columns, notes


def input_cell(shape: str) -> str:
    """'224' for a square 3-channel input ('3x224x224'), else its C x H x W."""
    parts = shape.split("x")
    return parts[1] if len(parts) == 3 and parts[0] == "3" and parts[1] == parts[2] else shape


def undeclared_line(df: pd.DataFrame) -> str | None:
    """The user models counted at the default input because their builders declare none, said once."""
    from convbench.zoo.specs import DEFAULT_SHAPE, UNDECLARED
    if "input_from" not in df:
        return None
    names = list(dict.fromkeys(df.loc[df["input_from"] == UNDECLARED, "model"]))
    if not names:
        return None
    return (f"{', '.join(names)}: {'its builder declares' if len(names) == 1 else 'their builders declare'} no input "
            f"size, so {'it was' if len(names) == 1 else 'they were'} measured at {'x'.join(map(str, DEFAULT_SHAPE))}: "
            "pass --input-size, or declare one (docs/profile.md, 'Input sizes')")


def print_profile(console: Console, df: pd.DataFrame, metrics: str, where: str) -> None:
    columns, notes = profile_columns(df, metrics)
    device = df["device_name"].iloc[0] if len(df) and "device_name" in df else ""
    dtype = df["dtype"].iloc[0] if len(df) and "dtype" in df else ""
    t, left_out = table(f"{device}, {dtype}" if device else None, columns, console.width)
    console.print(t)
    timed = any(c.header == "p50 ms" for c in columns)
    if timed and df["noisy"].astype(str).eq("True").any():
        say(console, NOISY_LEGEND)
    if timed and "launch_bound" in df and df["launch_bound"].astype(str).eq("True").any():
        say(console, LAUNCH_LEGEND)
    if any(c.header == "% peak" for c in columns) and not any(c.header == "% peak" for c in left_out):
        say(console, PEAK_LEGEND)
    legends(console, df, [c for c in columns if c not in left_out], ("p50 ms",), ("% peak",), "pct_peak")
    say(console, left_out_line(left_out, where))
    print_notes(console, notes)
    for n in sorted({n for n in df["note"].dropna()} if "note" in df else set()):
        say(console, f"note: {n}")
    undeclared = undeclared_line(df)
    if undeclared:
        say(console, f"note: {undeclared}")


def closing_line(df: pd.DataFrame, path: str) -> str:
    """'37 rows: 36 ok, 1 partial (notes above) -> DIR/profile.csv'."""
    counts = df["status"].value_counts() if len(df) else {}
    parts = [f"{counts[s]} {s}" for s in ("ok", "partial", "oom", "error", "diverged") if s in counts]
    noted = " (notes above)" if len(df) - (counts.get("ok", 0) if len(df) else 0) else ""
    return f"{plural(len(df), 'row')}: {', '.join(parts) or 'none finished'}{noted} -> {path}"


def compare_case(group: pd.DataFrame, notes: list[str], width: int) -> tuple[list[str], list[Column], list[str]]:
    """One case: heading lines, columns, and the verdict lines under its table."""
    first = group.iloc[0]
    rows = group.to_dict("records")
    mode = f", {first['mode']}" if first.get("mode", "eager") != "eager" else ""
    heading = [f"{first['comparison']} / {first['case']}",
               f"{first['input_shape']}, batch {first['batch_size']}, {first['device_name']}, {first['dtype']}{mode}",
               f"claim: {first['claim']}"]
    device = "device_ratio" in group and group["device_ratio"].notna().any()

    def ci(r: dict[str, Any]) -> str:
        lo, hi = r.get("ratio_ci_low"), r.get("ratio_ci_high")
        if r["variant"] == r["baseline"] or not isinstance(lo, float) or math.isnan(lo):
            return "-"
        return f"{lo:.2f}-{hi:.2f}"
    columns = [Column("variant", 0, "left", [str(r["variant"]) for r in rows]),
               Column("params", 4, cells=[si(r.get("params")) for r in rows]),
               Column("MACs", 2, cells=[si(r.get("macs")) for r in rows]),
               Column("claimed", 1, cells=[num(r.get("claimed_ratio"), ".3f") for r in rows]),
               Column("counted", 0, cells=[num(r.get("counted_ratio"), ".3f") for r in rows]),
               Column("measured", 0, cells=[num(r.get("measured_ratio"), ".3f") + busy_mark(r) for r in rows]),
               Column("95% CI", 2, cells=[ci(r) for r in rows])]
    if device:
        columns += [Column("device", 1, cells=[num(r.get("device_ratio"), ".3f") for r in rows]),
                    Column("GPU busy", 2, cells=[num(r.get("gpu_busy"), ".0%") for r in rows])]
    columns += [Column("p50 ms", 3, cells=[num(r.get("latency_ms_p50"), ".2f") for r in rows]),
                Column("base ms", 3, cells=["-" if r["variant"] == r["baseline"] else num(r.get("baseline_ms_p50"), ".2f")
                                            for r in rows]),
                Column("saved act", 4, cells=[num(r.get("saved_act_ratio"), ".3f") for r in rows])]
    verdicts = []
    for r in rows:
        if r["variant"] == r["baseline"]:
            continue
        text = r["verdict"] if r["status"] == "ok" else status_cell(r, notes, f"{first['case']}: {r['variant']} b{r['batch_size']}")
        if isinstance(r.get("max_abs_diff"), float) and not math.isnan(r["max_abs_diff"]):
            text += f"; same output as the baseline within {r['max_abs_diff']:.1e}"
        verdicts += wrap(f"{r['variant']}: {text}", width)
        for note in str(r.get("note") or "").split("; "):
            if note and note != CPU_MEMORY_NOTE and note != "nan":
                verdicts += wrap(f"{r['variant']}: note: {note}", width)
    return heading, columns, verdicts


def print_compare(console: Console, df: pd.DataFrame, where: str) -> None:
    width = console.width
    notes: list[str] = []
    all_left_out: dict[str, None] = {}
    for _, group in df.groupby(["comparison", "case", "batch_size"], sort=False):
        heading, columns, verdicts = compare_case(group, notes, width)
        console.print()
        for i, line in enumerate(heading):
            say(console, line, style="bold" if i == 0 else None)
        t, left_out = table(None, columns, width)
        all_left_out.update((c.header, None) for c in left_out)
        console.print(t)
        for line in verdicts:
            console.print(line, highlight=False, markup=False)
    console.print()
    shown = [Column(h) for h in ("measured",) if h not in all_left_out]
    legends(console, df, shown, ("measured",), (), "pct_peak")
    say(console, left_out_line([Column(h) for h in all_left_out], where))
    print_notes(console, notes)


def busy_warning(df: pd.DataFrame, label: Callable[[dict[str, Any]], str]) -> str | None:
    """One line naming the rows timed while other processes used the machine, or None."""
    if "busy" not in df:
        return None
    busy = df[df["busy"].astype(str) == "True"]
    if busy.empty:
        return None
    names = [label(r) for r in busy.to_dict("records")]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    worst = float(busy["host_busy"].max())
    return (f"warning: {plural(len(names), 'row')} timed while other processes used up to {worst:.0%} of "
            f"the CPU (busy): {shown}; rerun on a quiet machine")

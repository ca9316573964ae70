from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from convbench.cli.app import app, console
from convbench.run.config import parse_list, parse_percent
from convbench.analysis.diff import MEDIANS, DiffResult, diff
from convbench.errors import UserError
from convbench.files import write_atomically
from convbench.results.writers import to_markdown

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "md", "csv")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ratio(r) -> str:
    return "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.3f}x"


def _ci(r) -> str:
    return "" if math.isnan(r["ci_low"]) else f"{r['ci_low']:.3f}-{r['ci_high']:.3f}"


def _varying(result: DiffResult) -> tuple[list[str], dict[str, str]]:
    """Key columns that differ between matched rows go in the table; the rest are said once, above it."""
    rows = result.rows
    varying = [k for k in result.keys if rows[k].nunique() > 1] or result.keys[:1]
    fixed = {k: str(rows[k].iloc[0]) for k in result.keys if k not in varying}
    return varying, fixed


def display_frame(result: DiffResult) -> pd.DataFrame:
    varying, _ = _varying(result)
    frame = result.rows[varying].copy()
    frame["old"] = result.rows["old"].map(_fmt)
    frame["new"] = result.rows["new"].map(_fmt)
    frame["new/old"] = [_ratio(r) for _, r in result.rows.iterrows()]
    frame["95% CI"] = [_ci(r) for _, r in result.rows.iterrows()]
    frame[""] = result.rows["mark"]
    return frame


def _title(result: DiffResult) -> list[str]:
    _, fixed = _varying(result)
    lines = [f"{result.metric}: {result.old.path} -> {result.new.path}",
             f"{_plural(len(result.rows), 'matched row')} on {', '.join(result.keys)}"]
    if fixed:
        lines.append("all rows: " + ", ".join(f"{k} {v}" for k, v in fixed.items()))
    return lines


def _footer(result: DiffResult) -> list[str]:
    lines = [f"geometric mean of new/old over {_plural(int(result.rows['ratio'].notna().sum()), 'row')}: {result.geomean:.3f}x"]
    how = ("distribution-free, from each run's median interval" if result.metric in MEDIANS
           else "a bootstrap of the two runs' samples, fixed seed, approximate")
    lines.append(f"`*`: the 95% interval ({how}) excludes 1; `~`: no significant change; no mark: too few samples "
                 "for an interval")
    lines += result.notes
    if not result.exact.empty:
        lines.append(f"exact counts changed ({len(result.exact)}):")
        for _, r in result.exact.iterrows():
            key = ", ".join(str(r[k]) for k in result.keys)
            lines.append(f"  {key}: {r['column']} {r['old']:,} -> {r['new']:,} ({r['difference']:+,})")
    else:
        lines.append("exact counts (params, MACs, activations, saved bytes): identical in every matched row")
    varying, _ = _varying(result)
    for label, frame in (("added, only in NEW", result.added), ("removed, only in OLD", result.removed)):
        if not frame.empty:
            shown = [" ".join(str(v) for v in row) for row in frame[[k for k in result.keys if k in varying or k == "batch_size"]]
                     .drop_duplicates().itertuples(index=False)]
            more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
            lines.append(f"{_plural(len(frame), 'row')} {label}: {'; '.join(shown[:8])}{more}")
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The older results folder (profile or compare).")],
    new: Annotated[Path, typer.Argument(help="The newer results folder.")],
    on: Annotated[Optional[str], typer.Option(help="Comma list of columns to match rows on, e.g. model,batch_size to diff across dtypes or GPUs.")] = None,
    metric: Annotated[str, typer.Option(help="Column to compare: latency_ms_p50, throughput_img_s, peak_mem_train_bytes, ...")] = "latency_ms_p50",
    fail_above: Annotated[Optional[str], typer.Option("--fail-above", help="Exit 1 when a significant change for the worse exceeds this, e.g. 5%.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, md or csv.")] = "table",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the output to this file instead of the screen.")] = None,
) -> None:
    """What changed between two result folders: ratios with intervals, exact counts, added and removed rows."""
    if format not in FORMATS:
        raise UserError(f"unknown --format {format!r}; choose table, md or csv")
    limit = parse_percent(fail_above, "--fail-above") if fail_above is not None else None
    result = diff(old, new, on=parse_list(on, "--on") if on else None, metric=metric)
    frame = display_frame(result)
    if format == "csv":
        text = result.rows.to_csv(index=False)
    elif format == "md":
        text = "\n\n".join(f"**{line}**" if i == 0 else line for i, line in enumerate(_title(result))) + "\n\n"
        text += to_markdown(frame) + "\n" + "\n".join(f"- {line}" for line in _footer(result)) + "\n"
    else:
        text = None
    if out is not None:
        try:
            write_atomically(out, text if text is not None else to_markdown(frame))
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
        console.print(f"{len(result.rows)} matched rows written to {out}", highlight=False)
    elif text is not None:
        typer.echo(text, nl=False)
    else:
        for line in _title(result):
            console.print(line, highlight=False, markup=False)
        table = Table()
        for col in frame.columns:
            table.add_column(col, justify="left" if col in result.keys or col == "" else "right")
        for row in frame.itertuples(index=False):
            table.add_row(*map(str, row))
        console.print(table)
        for line in _footer(result):
            console.print(line, highlight=False, markup=False)
    if limit is not None:
        worse = result.worse(limit)
        for _, r in worse.iterrows():
            key = ", ".join(str(r[k]) for k in result.keys)
            console.print(f"SLOWER {key}: {result.metric} {_fmt(r['old'])} -> {_fmt(r['new'])}, {_ratio(r)} "
                          f"(95% CI {_ci(r)}) beyond {limit:.0%}", highlight=False, markup=False)
        if not worse.empty:
            raise typer.Exit(1)

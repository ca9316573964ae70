from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli.report_cmd import print_report
from convbench.cli.app import LazyProgress, app, console
from convbench.cli.tables import busy_warning, compare_tables
from convbench.compare import CompareConfig, run_compare
from convbench.config import parse_int_list, parse_list
from convbench.errors import UserInterrupt


@app.command("compare")
def compare_command(
    name: Annotated[str, typer.Argument(help="factorization, asymmetric, reduction, grouped, or all.")],
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    batch_size: Annotated[str, typer.Option("--batch-size", "-b", help="Comma list of batch sizes.")] = "1",
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA) / bf16.")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC blocks and input.")] = False,
    shape: Annotated[Optional[str], typer.Option("--shape", help="C,H,W for every block case (whole-network cases keep theirs).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs of each variant first.")] = 3,
    pairs: Annotated[int, typer.Option(help="Interleaved timed pairs per variant vs its baseline.")] = 15,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path("results/compare"),
    format: Annotated[str, typer.Option("--format", help="Comma list of csv, json, md, parquet.")] = "csv,md",
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Measure whole-network cases in a child process (default: on for CUDA).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds an isolated case may stay silent before its child is killed.")] = 900.0,
    report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")] = False,
) -> None:
    """Claimed vs counted vs measured cost of the block designs the papers argue about."""
    config = CompareConfig(
        name=name, device=device, batch_sizes=parse_int_list(batch_size, "--batch-size"), dtype=dtype,
        channels_last=channels_last, shape=parse_int_list(shape, "--shape") if shape else None, warmup=warmup,
        pairs=pairs, out=out, formats=tuple(dict.fromkeys(("csv", *parse_list(format)))), isolate=isolate, timeout=timeout,
    )
    with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        def on_row(row: dict[str, Any]) -> None:
            progress.update(description=f"{row['case']}: {row['variant']} b{row['batch_size']}")

        run = run_compare(config, on_row=on_row)
    for table in compare_tables(run.frame):
        console.print(table)
    warning = busy_warning(run.frame, lambda r: f"{r['case']}: {r['variant']} b{r['batch_size']}")
    if warning:
        console.print(warning, style="yellow", highlight=False)
    console.print(f"{len(run.rows)} rows written to {out}/compare.csv", highlight=False)
    if report:
        print_report(out)
    if run.interrupted:
        raise UserInterrupt(f"interrupted: the {len(run.rows)} finished rows are in {out}/compare.csv")

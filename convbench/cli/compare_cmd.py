from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli.report_cmd import print_report
from convbench.cli.app import LazyProgress, app, console
from convbench.cli.options import CudnnBenchmark, Tf32, Threads
from convbench.cli.tables import busy_warning, closing_line, compare_tables
from convbench.compare import CompareConfig, run_compare
from convbench.config import parse_int_list, parse_list
from convbench.errors import UserError, UserInterrupt
from convbench.modes import modes_from_flags


def _one_mode(mode: str | None, compile: bool, cuda_graphs: bool) -> str:
    chosen = modes_from_flags(mode, compile, cuda_graphs)
    if len(chosen) != 1:
        raise UserError("compare runs one mode at a time; run it once per mode")
    return chosen[0]


@app.command("compare")
def compare_command(
    name: Annotated[str, typer.Argument(help="factorization, asymmetric, reduction, grouped, or all.")],
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    batch_size: Annotated[str, typer.Option("--batch-size", "-b", help="Comma list of batch sizes.")] = "1",
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA) / bf16.")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC blocks and input.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile every variant (with --cuda-graphs: compile+graphs).")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Time CUDA-graph replays of each variant (CUDA only).")] = False,
    mode: Annotated[Optional[str], typer.Option("--mode", help="One of eager, compile, graphs, compile+graphs.")] = None,
    cudnn_benchmark: CudnnBenchmark = True,
    tf32: Tf32 = None,
    threads: Threads = None,
    shape: Annotated[Optional[str], typer.Option("--shape", help="C,H,W for every block case (whole-network cases keep theirs).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs of each variant first.")] = 3,
    pairs: Annotated[int, typer.Option(help="Interleaved timed pairs per variant vs its baseline.")] = 15,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path("runs/compare"),
    format: Annotated[str, typer.Option("--format", help="Comma list of csv, json, md, parquet.")] = "csv,md",
    counter: Annotated[str, typer.Option(help="MACs and activations from: dispatch (meta device, fast) or fvcore (JIT trace).")] = "dispatch",
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Measure whole-network cases in a child process (default: on for CUDA).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds an isolated case may stay silent before its child is killed.")] = 900.0,
    report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")] = False,
) -> None:
    """Claimed vs counted vs measured cost of the block designs the papers argue about."""
    config = CompareConfig(
        name=name, device=device, batch_sizes=parse_int_list(batch_size, "--batch-size"), dtype=dtype,
        channels_last=channels_last, mode=_one_mode(mode, compile, cuda_graphs), shape=parse_int_list(shape, "--shape") if shape else None, warmup=warmup,
        pairs=pairs, out=out, formats=tuple(dict.fromkeys(("csv", *parse_list(format)))), counter=counter, isolate=isolate, timeout=timeout,
        cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads,
    )
    with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        def on_row(row: dict[str, Any]) -> None:
            progress.update(description=f"{row['case']}: {row['variant']} b{row['batch_size']}")

        run = run_compare(config, on_row=on_row)
    tables, notes = compare_tables(run.frame)
    for table in tables:
        console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", highlight=False, markup=False)
    if config.device == "cpu":
        console.print("peak memory is not measured for blocks on the CPU; the saved-activation ratio is exact", style="dim")
    warning = busy_warning(run.frame, lambda r: f"{r['case']}: {r['variant']} b{r['batch_size']}")
    if warning:
        console.print(warning, style="yellow", highlight=False)
    console.print(closing_line(run.frame, f"{out}/compare.csv"), highlight=False)
    if report:
        print_report(out)
    if run.interrupted:
        raise UserInterrupt(f"interrupted: the {len(run.rows)} finished rows are in {out}/compare.csv")

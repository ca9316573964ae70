from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli.app import LazyProgress, app, console
from convbench.cli.options import CudnnBenchmark, Tf32, Threads
from convbench.cli.sweep import Screen, run_sweep
from convbench.cli.tables import print_compare
from convbench.compare import CPU_MEMORY_NOTE, CompareConfig, run_compare
from convbench.config import parse_int_list, parse_list
from convbench.errors import UserError
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
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (default: a new runs/compare/<time>, and runs/compare/latest).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 for any row not ok (oom included).")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: measure shard I of N of the cases (default: from torchrun or a Slurm array).")] = None,
    format: Annotated[str, typer.Option("--format", help="Comma list of csv, json, md, parquet.")] = "csv,md",
    counter: Annotated[str, typer.Option(help="MACs and activations from: dispatch (meta device, fast) or fvcore (JIT trace).")] = "dispatch",
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Measure whole-network cases in a child process (default: on for CUDA).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds an isolated case may stay silent before its child is killed.")] = 900.0,
    report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")] = False,
) -> None:
    """Claimed vs counted vs measured cost of the block designs the papers argue about."""
    batch_sizes, chosen_mode = parse_int_list(batch_size, "--batch-size"), _one_mode(mode, compile, cuda_graphs)
    formats = tuple(dict.fromkeys(("csv", *parse_list(format))))

    def make_config(folder: Path, dev: str, part: tuple | None) -> CompareConfig:
        return CompareConfig(
            name=name, device=dev, batch_sizes=batch_sizes, dtype=dtype, channels_last=channels_last, mode=chosen_mode,
            shape=parse_int_list(shape, "--shape") if shape else None, warmup=warmup, pairs=pairs, out=folder,
            overwrite=overwrite, formats=formats, counter=counter, isolate=isolate, timeout=timeout,
            cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads, shard=part)

    def measure(config: CompareConfig) -> int:
        with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
            def on_row(row: dict[str, Any]) -> None:
                progress.update(description=f"{row['case']}: {row['variant']} b{row['batch_size']}")

            run = run_compare(config, on_row=on_row)
        return screen.finished(run.frame, config.out, run.interrupted)

    screen = Screen("compare", print_table, BUSY_LABEL, strict, report)
    raise typer.Exit(run_sweep("compare", shard, out, overwrite, device, make_config, measure, screen.merged))


def BUSY_LABEL(r: dict[str, Any]) -> str:
    return f"{r['case']}: {r['variant']} b{r['batch_size']}"


def print_table(frame, where: str) -> None:
    print_compare(console, frame, where)
    if (frame["device"].astype(str) == "cpu").any():
        console.print(f"note: {CPU_MEMORY_NOTE}", style="dim", highlight=False)

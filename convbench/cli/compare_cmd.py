from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli.app import LazyProgress, app, console
from convbench.cli import options
from convbench.cli.sweep import Screen, run_sweep
from convbench.cli.tables import print_compare
from convbench.run.compare import CPU_MEMORY_NOTE, run_compare
from convbench.run.config import CompareConfig
from convbench.run.config import parse_float_list, parse_int_list, parse_list
from convbench.errors import UserError
from convbench.run.modes import modes_from_flags


Out, Shard = options.out("compare"), options.shard("cases")
Isolate = options.isolate("each whole-network case", "on for CUDA")
Timeout = options.timeout("an isolated case")


def _one_mode(mode: str | None, compile: bool, cuda_graphs: bool) -> str:
    chosen = modes_from_flags(mode, compile, cuda_graphs)
    if len(chosen) != 1:
        raise UserError("compare runs one mode at a time; run it once per mode")
    return chosen[0]


@app.command("compare")
def compare_command(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="factorization, asymmetric, reduction, grouped, pooling or "
                                                                       "all; or two or more designs, zoo models or "
                                                                       "package.module:function, the first the baseline.")],
    device: options.Device = "cpu",
    batch_size: options.BatchSizes = "1",
    dtype: options.Dtype = "fp32",
    channels_last: options.ChannelsLast = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile every variant (with --cuda-graphs: compile+graphs).")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Time CUDA-graph replays of each variant (CUDA only).")] = False,
    mode: Annotated[Optional[str], typer.Option("--mode", help="One of eager, compile, graphs, compile+graphs.")] = None,
    cudnn_benchmark: options.CudnnBenchmark = True,
    tf32: options.Tf32 = None,
    threads: options.Threads = None,
    shape: Annotated[Optional[str], typer.Option("--shape", "--input-shape", help="C,H,W for every block case (whole-network cases keep theirs); "
                                                                 "for designs, their input.")] = None,
    output: options.Output = None,
    claim: Annotated[Optional[str], typer.Option("--claim", help="Designs: each variant's claimed cost over the baseline, "
                                                                 "a comma list (0.29: 29%).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs of each variant first.")] = 3,
    pairs: Annotated[int, typer.Option(help="Interleaved timed pairs per variant vs its baseline (at least 6: the fewest with a real 95% interval).")] = 15,
    out: Out = None,
    overwrite: options.Overwrite = False,
    strict: options.Strict = False,
    shard: Shard = None,
    format: options.Formats = "csv,md",
    counter: options.Counter = "dispatch",
    isolate: Isolate = None,
    timeout: Timeout = 900.0,
    report: options.Report = False,
) -> None:
    """Claimed vs counted vs measured cost of the block designs the papers argue about."""
    batch_sizes, chosen_mode = parse_int_list(batch_size, "--batch-size"), _one_mode(mode, compile, cuda_graphs)
    formats = tuple(dict.fromkeys(("csv", *parse_list(format, "--format"))))

    def make_config(folder: Path, dev: str, part: tuple | None) -> CompareConfig:
        return CompareConfig(
            name=",".join(names), output=output, claims=parse_float_list(claim, "--claim") if claim else None, device=dev,
            batch_sizes=batch_sizes, dtype=dtype, channels_last=channels_last, mode=chosen_mode,
            shape=parse_int_list(shape, "--shape") if shape else None, warmup=warmup, pairs=pairs, out=folder,
            overwrite=overwrite, formats=formats, counter=counter, isolate=isolate, timeout=timeout,
            cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads, shard=part)

    def measure(config: CompareConfig) -> int:
        with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
            def on_row(row: dict[str, Any]) -> None:
                progress.update(description=f"{row['case']}: {row['variant']} b{row['batch_size']}")

            run = run_compare(config, on_row=on_row)
        return screen.finished(run.frame, config.out, run.interrupted, restored=run.restored, refused=run.refused)

    screen = Screen("compare", print_table, BUSY_LABEL, strict, report)
    raise typer.Exit(run_sweep("compare", shard, out, overwrite, device, make_config, measure, screen.merged))


def BUSY_LABEL(r: dict[str, Any]) -> str:
    return f"{r['case']}: {r['variant']} b{r['batch_size']}"


def print_table(frame, where: str) -> None:
    print_compare(console, frame, where)
    if (frame["device"].astype(str) == "cpu").any():
        console.print(f"note: {CPU_MEMORY_NOTE}", style="dim", highlight=False)

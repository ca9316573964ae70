from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from convbench.cli.app import LazyProgress, app, console
from convbench.cli import options
from convbench.cli.sweep import Screen, run_sweep
from convbench.cli.tables import print_profile
from convbench.run.config import ProfileConfig, parse_input, parse_int_list, parse_list
from convbench.run.modes import modes_from_flags
from convbench.run.profile import run_profile


Out, Shard = options.out("profile"), options.shard("models")
Isolate = options.isolate("each model", "on for CUDA, off for the CPU")
Timeout = options.timeout("a model")


def BUSY_LABEL(r: dict[str, Any]) -> str:
    return f"{r['model']} b{r['batch_size']}" + (f" {r['mode']}" if r.get("mode") != "eager" else "")


@app.command("profile")
def profile_command(
    arch: options.Arch = "all",
    all_matching: options.AllMatching = False,
    device: options.Device = "cpu",
    batch_size: Annotated[Optional[str], typer.Option("--batch-size", "-b", help="Comma list of batch sizes (default 1; "
                                                      "a static run at the default leaves out saved bytes a batch of 1 "
                                                      "cannot have, without a partial row).")] = None,
    dtype: options.Dtype = "fp32",
    channels_last: options.ChannelsLast = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model before warm-up (with --cuda-graphs: compile+graphs).")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Capture the forward in a CUDA graph and time its replays (CUDA only).")] = False,
    mode: Annotated[Optional[str], typer.Option("--mode", help="Comma list of eager, compile, graphs, compile+graphs: one row per mode, side by side.")] = None,
    cudnn_benchmark: options.CudnnBenchmark = True,
    tf32: options.Tf32 = None,
    threads: options.Threads = None,
    with_ceiling: Annotated[bool, typer.Option("--ceiling/--no-ceiling", help="Measure this machine's ceiling (once, cached) for % peak.")] = True,
    metrics: Annotated[str, typer.Option(help="static (params, MACs, acts, saved bytes), all (adds latency and memory) or instructions (static and the "
                                                        "instructions a forward executes, counted by valgrind, on the CPU).")] = "all",
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 5,
    iters: Annotated[Optional[int], typer.Option(help="Timed iterations (overrides --min-time).")] = None,
    min_time: Annotated[float, typer.Option("--min-time", help="Seconds of timed work per row when --iters is not given.")] = 1.0,
    input_size: options.InputSize = None,
    input_shape: options.InputShape = None,
    output: options.Output = None,
    out: Out = None,
    overwrite: options.Overwrite = False,
    strict: options.Strict = False,
    shard: Shard = None,
    format: options.Formats = "csv",
    cpu_memory: Annotated[bool, typer.Option("--cpu-memory/--no-cpu-memory", help="On the CPU, measure peak memory in a "
                                                                                   "child process per row (seconds each).")] = True,
    by_layer: Annotated[bool, typer.Option("--by-layer", help="Also write per-module params, MACs and acts to layers.csv.")] = False,
    counter: options.Counter = "dispatch",
    isolate: Isolate = None,
    timeout: Timeout = 900.0,
    report: options.Report = False,
) -> None:
    """Measure params, MACs, activations, memory and latency; one row per model, batch size and mode."""
    formats = tuple(dict.fromkeys(("csv", *parse_list(format, "--format"))))
    batch_sizes = parse_int_list(batch_size if batch_size is not None else "1", "--batch-size")
    run_modes = modes_from_flags(mode, compile, cuda_graphs)
    shape = parse_input(input_size, input_shape)

    def make_config(folder: Path, dev: str, part: tuple | None) -> ProfileConfig:
        return ProfileConfig(
            arch=arch, device=dev, batch_sizes=batch_sizes, dtype=dtype, channels_last=channels_last, modes=run_modes,
            cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads, metrics=metrics, warmup=warmup, iters=iters,
            min_time=min_time, input_size=shape, output=output, out=folder, overwrite=overwrite, formats=formats, by_layer=by_layer, cpu_memory=cpu_memory,
            counter=counter, isolate=isolate, timeout=timeout, shard=part, ceiling=with_ceiling, all_matching=all_matching,
            batch_given=batch_size is not None)

    def measure(config: ProfileConfig) -> int:
        with LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            def on_row(row: dict[str, Any]) -> None:
                progress.update(advance=1, description=f"{row['model']} b{row['batch_size']} {row.get('mode', '')}: {row['status']}")

            run = run_profile(config, on_row=on_row, on_start=lambda n: progress.update(total=n, description="profiling"))
        return screen.finished(run.frame, config.out, run.interrupted, restored=run.restored, refused=run.refused)

    screen = Screen("profile", lambda f, w: print_profile(console, f, metrics, w), BUSY_LABEL, strict, report)
    raise typer.Exit(run_sweep("profile", shard, out, overwrite, device, make_config, measure, screen.merged))

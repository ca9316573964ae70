from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from convbench.cli.app import LazyProgress, app, console
from convbench.cli.options import CudnnBenchmark, Tf32, Threads
from convbench.cli.sweep import Screen, run_sweep
from convbench.cli.tables import print_profile
from convbench.config import ProfileConfig, parse_int_list, parse_list
from convbench.modes import modes_from_flags
from convbench.runner import run_profile


def BUSY_LABEL(r: dict[str, Any]) -> str:
    return f"{r['model']} b{r['batch_size']}" + (f" {r['mode']}" if r.get("mode") != "eager" else "")


@app.command("profile")
def profile_command(
    arch: Annotated[str, typer.Option("--arch", "-a", help="all, a name, a pattern ('resnet*'), a comma list, or module:function.")] = "all",
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    batch_size: Annotated[str, typer.Option("--batch-size", "-b", help="Comma list of batch sizes.")] = "1",
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA) / bf16.")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model before warm-up (with --cuda-graphs: compile+graphs).")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Capture the forward in a CUDA graph and time its replays (CUDA only).")] = False,
    mode: Annotated[Optional[str], typer.Option("--mode", help="Comma list of eager, compile, graphs, compile+graphs: one row per mode, side by side.")] = None,
    cudnn_benchmark: CudnnBenchmark = True,
    tf32: Tf32 = None,
    threads: Threads = None,
    with_ceiling: Annotated[bool, typer.Option("--ceiling/--no-ceiling", help="Measure this machine's ceiling (once, cached) for % peak.")] = True,
    metrics: Annotated[str, typer.Option(help="static (params, MACs, acts, saved bytes) or all (adds latency and memory).")] = "all",
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 5,
    iters: Annotated[Optional[int], typer.Option(help="Timed iterations (overrides --min-time).")] = None,
    min_time: Annotated[float, typer.Option("--min-time", help="Seconds of timed work per row when --iters is not given.")] = 1.0,
    input_size: Annotated[Optional[int], typer.Option("--input-size", help="Override every model's input size.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (default: a new runs/profile/<time>, and runs/profile/latest).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 for any row not ok (partial and oom included).")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: measure shard I of N (default: from torchrun or a Slurm array).")] = None,
    format: Annotated[str, typer.Option("--format", help="Comma list of csv, json, md, parquet (csv is always written).")] = "csv",
    by_layer: Annotated[bool, typer.Option("--by-layer", help="Also write per-module params, MACs and acts to layers.csv.")] = False,
    counter: Annotated[str, typer.Option(help="MACs and activations from: dispatch (meta device, fast) or fvcore (JIT trace).")] = "dispatch",
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Measure each model in its own child process (default: on for CUDA, off for the CPU).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a row may take under --isolate before its child is killed.")] = 900.0,
    report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")] = False,
) -> None:
    """Measure params, MACs, activations, memory and latency; one row per model, batch size and mode."""
    formats = tuple(dict.fromkeys(("csv", *parse_list(format))))
    batch_sizes, run_modes = parse_int_list(batch_size, "--batch-size"), modes_from_flags(mode, compile, cuda_graphs)

    def make_config(folder: Path, dev: str, part: tuple | None) -> ProfileConfig:
        return ProfileConfig(
            arch=arch, device=dev, batch_sizes=batch_sizes, dtype=dtype, channels_last=channels_last, modes=run_modes,
            cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads, metrics=metrics, warmup=warmup, iters=iters,
            min_time=min_time, input_size=input_size, out=folder, overwrite=overwrite, formats=formats, by_layer=by_layer,
            counter=counter, isolate=isolate, timeout=timeout, shard=part, ceiling=with_ceiling)

    def measure(config: ProfileConfig) -> int:
        with LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            def on_row(row: dict[str, Any]) -> None:
                progress.update(advance=1, description=f"{row['model']} b{row['batch_size']} {row.get('mode', '')}: {row['status']}")

            run = run_profile(config, on_row=on_row,
                              on_start=lambda n: progress.update(total=n * len(config.run_modes), description="profiling"))
        return screen.finished(run.frame, config.out, run.interrupted)

    screen = Screen("profile", lambda f, w: print_profile(console, f, metrics, w), BUSY_LABEL, strict, report)
    raise typer.Exit(run_sweep("profile", shard, out, overwrite, device, make_config, measure, screen.merged))

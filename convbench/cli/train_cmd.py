from __future__ import annotations

from pathlib import Path
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from convbench.cli.app import LazyProgress, app, console
from convbench.cli.fit import Column, kept, left_out_line, mib, num, plural, say, table
from convbench.cli import options
from convbench.cli.sweep import Screen, run_sweep
from convbench.cli.tables import busy_mark, legends, print_notes, share_cell, status_cell
from convbench.errors import RunStopped, UserInterrupt
from convbench.results.schema import STEPS_CSV
from convbench.run.config import TrainConfig, parse_input
from convbench.run.train import run_train

if TYPE_CHECKING:
    import pandas as pd


Out, Shard = options.out("train"), options.shard("networks")
Isolate = options.isolate("each network", "on for CUDA")
Timeout = options.timeout("a training run")


@app.command("train")
def train_command(
    arch: options.Arch = "resnet18",
    steps: Annotated[int, typer.Option(help="Optimizer steps per run.")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per step (per process).")] = 32,
    device: options.Device = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA, with a grad scaler) / bf16.")] = "fp32",
    channels_last: options.ChannelsLast = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    cudnn_benchmark: options.CudnnBenchmark = True,
    tf32: options.Tf32 = None,
    threads: options.Threads = None,
    lr: Annotated[float, typer.Option(help="SGD learning rate (momentum 0.9).")] = 0.02,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Label-smoothing epsilon, 0 to below 1 "
                                                   "(Inception-v3 section 7 uses 0.1; default 0: none).")] = 0.0,
    aux_weight: Annotated[Optional[float], typer.Option("--aux-weight", help="Weight of each auxiliary head's loss "
                                                        "(default 0.3, the papers'); 0 trains without the heads.")] = None,
    data: Annotated[str, typer.Option(help="synthetic, cifar10:PATH or folder:PATH.")] = "synthetic",
    seed: Annotated[int, typer.Option(help="Seed for weights and data.")] = 0,
    input_size: options.InputSize = None,
    input_shape: options.InputShape = None,
    output: options.Output = None,
    log_every: Annotated[int, typer.Option("--log-every", help="Steps between loss lines and the window of final loss/accuracy.")] = 10,
    compare: Annotated[Optional[str], typer.Option(help="Train both sides of a comparison: googlenet (5x5 vs two 3x3), inception_v3 (7x7 vs 1x7+7x1) or "
                                                                  "inception_v3_aux (with vs without the auxiliary head).")] = None,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", help="Processes for DistributedDataParallel (via torchrun).")] = 1,
    out: Out = None,
    overwrite: options.Overwrite = False,
    strict: options.Strict = False,
    shard: Shard = None,
    isolate: Isolate = None,
    timeout: Timeout = 1800.0,
    report: options.Report = False,
) -> None:
    """Short training runs: step time, images/s, memory, the loss curve and held-out accuracy."""
    shape = parse_input(input_size, input_shape)

    def make_config(folder: Path, dev: str, part: tuple | None) -> TrainConfig:
        return TrainConfig(arch=arch, steps=steps, batch_size=batch_size, device=dev, dtype=dtype, channels_last=channels_last,
                           compile=compile, lr=lr, data=data, seed=seed, out=folder, overwrite=overwrite,
                           nproc_per_node=nproc_per_node, compare=compare, input_size=shape, output=output, log_every=log_every,
                           label_smoothing=label_smoothing, aux_weight=aux_weight,
                           isolate=isolate, timeout=timeout, cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads,
                           shard=part)

    def measure(config: TrainConfig) -> int:
        windows: dict[str, deque] = {}
        written = [0]
        with LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            def on_step(row: dict[str, Any]) -> None:
                written[0] += 1
                window = windows.setdefault(f"{row['run']} x{row['nproc']}", deque(maxlen=log_every))
                window.append((row["loss"], row["batch_acc"]))
                progress.update(total=steps, completed=row["step"], description=f"{row['run']} step {row['step']}")
                if row["step"] % log_every == 0:
                    loss = sum(v for v, _ in window) / len(window)
                    acc = sum(a for _, a in window) / len(window)
                    procs = f" x{row['nproc']}" if row["nproc"] > 1 else ""
                    first = row["step"] - len(window) + 1
                    console.print(f"{row['run']}{procs}  step {row['step']}/{steps}  loss {loss:.3f}  acc {acc:.3f}"
                                  f"  (means, steps {first}-{row['step']})", highlight=False, markup=False)

            run = run_train(config, on_step=on_step)
        code = screen.finished(run.frame, config.out, run.interrupted, UserInterrupt(
            f"interrupted: {kept(written[0], 'finished step', config.out / STEPS_CSV)}, the "
            f"{plural(len(run.frame), 'finished run')} in {config.out / 'train.csv'}"), restored=run.restored and not written[0],
            refused=run.refused)
        if run.stopped:  # a diverged run is a failed row (exit 1, as for profile's error rows), not bad input
            raise RunStopped(f"{run.stopped}; training stopped, the rows so far are in {config.out}")
        return code

    screen = Screen("train", lambda f, w: print_train(f, log_every), BUSY_LABEL, strict, report)
    raise typer.Exit(run_sweep("train", shard, out, overwrite, device, make_config, measure, screen.merged))


def _scaling(r: dict[str, Any]) -> str:
    """A scaling efficiency above 1 cannot be: shown as such, never as a result (the row's note says why)."""
    value = r.get("scaling_efficiency")
    return "n/a!" if isinstance(value, float) and value > 1 else num(value, ".2f")


def BUSY_LABEL(r: dict[str, Any]) -> str:
    return f"{r['run']}" + (f" x{r['nproc']}" if r.get("nproc", 1) > 1 else "")


def print_train(frame: pd.DataFrame, log_every: int) -> None:
    rows = frame.to_dict("records")
    ddp = any((r.get("nproc") or 1) > 1 for r in rows)
    notes: list[str] = []
    columns = [Column("run", 0, "left", [str(r["run"]) + (f" x{r['nproc']}" if ddp and r.get("nproc", 1) > 1 else "") for r in rows]),
               Column("step p50 ms", 0, cells=[num(r.get("step_ms_p50"), ".1f") + busy_mark(r) for r in rows]),
               Column("img/s", 0, cells=[num(r.get("images_per_s"), ",.1f") for r in rows])]
    if ddp:
        columns += [Column("all img/s", 1, cells=[num(r.get("aggregate_images_per_s"), ",.1f") for r in rows]),
                    Column("scaling", 1, cells=[_scaling(r) for r in rows])]
    if "mfu" in frame and frame["mfu"].notna().any():
        columns.append(Column("MFU", 1, cells=[share_cell(r.get("mfu")) for r in rows]))
    columns += [Column("peak MiB", 2, cells=[mib(r.get("peak_mem_train_bytes")) for r in rows]),
                Column(f"loss 1st -> last {log_every}", 1, cells=[f"{num(r.get('first_loss'), '.3f')} -> {num(r.get('final_loss'), '.3f')}"
                                                                  for r in rows]),
                Column(f"acc last {log_every}", 3, cells=[num(r.get("final_train_acc"), ".3f") for r in rows]),
                Column("held-out", 2, cells=[num(r.get("heldout_acc"), ".3f") for r in rows]),
                Column("status", 0, "left", [status_cell(r, notes, str(r["run"])) for r in rows])]
    t, left_out = table("training runs", columns, console.width)
    console.print(t)
    legends(console, frame, [c for c in columns if c not in left_out], ("step p50 ms",), ("MFU",), "mfu")
    say(console, left_out_line(left_out, "train.csv"))
    print_notes(console, notes)
    for note in sorted({n for n in frame["note"].dropna()} if "note" in frame else set()):
        say(console, f"note: {note}")
    say(console, f"last: mean loss and train accuracy over the last {log_every} steps; held-out: accuracy on held-out data "
                 "after the run; MFU: training FLOPs per image (forward + backward, counted) x img/s over this machine's "
                 "measured peak")

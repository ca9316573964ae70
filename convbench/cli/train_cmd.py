from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from convbench.cli.report_cmd import print_report
from convbench.cli.app import LazyProgress, app, console
from convbench.cli.options import CudnnBenchmark, Tf32, Threads
from convbench.cli.tables import _num, _scaled, status_cell, closing_line
from convbench.errors import UserError, UserInterrupt
from convbench.train import TrainConfig, run_train


@app.command("train")
def train_command(
    arch: Annotated[str, typer.Option("--arch", "-a", help="Zoo name, pattern, comma list, or package.module:function.")] = "resnet18",
    steps: Annotated[int, typer.Option(help="Optimizer steps per run.")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per step (per process).")] = 32,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA, with a grad scaler) / bf16.")] = "fp32",
    channels_last: Annotated[bool, typer.Option("--channels-last")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    cudnn_benchmark: CudnnBenchmark = True,
    tf32: Tf32 = None,
    threads: Threads = None,
    lr: Annotated[float, typer.Option(help="SGD learning rate (momentum 0.9).")] = 0.02,
    data: Annotated[str, typer.Option(help="synthetic, cifar10:PATH or folder:PATH.")] = "synthetic",
    seed: Annotated[int, typer.Option(help="Seed for weights and data.")] = 0,
    input_size: Annotated[Optional[int], typer.Option("--input-size", help="Image size (default: the model's own).")] = None,
    log_every: Annotated[int, typer.Option("--log-every", help="Steps between loss lines and the window of final loss/accuracy.")] = 10,
    compare: Annotated[Optional[str], typer.Option(help="Train both sides of a block comparison: googlenet or inception_v3.")] = None,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", help="Processes for DistributedDataParallel (via torchrun).")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path("runs/train"),
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Train each network in its own child process (default: on for CUDA with several networks).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds an isolated run may go without a step before it is killed.")] = 1800.0,
    report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")] = False,
) -> None:
    """Short training runs: step time, images/s, memory, the loss curve and held-out accuracy."""
    config = TrainConfig(arch=arch, steps=steps, batch_size=batch_size, device=device, dtype=dtype, channels_last=channels_last,
                         compile=compile, lr=lr, data=data, seed=seed, out=out, nproc_per_node=nproc_per_node,
                         compare=compare, input_size=input_size, log_every=log_every, isolate=isolate, timeout=timeout,
                         cudnn_benchmark=cudnn_benchmark, tf32=tf32, threads=threads)
    with LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as progress:
        def on_step(row: dict[str, Any]) -> None:
            progress.update(total=steps, completed=row["step"], description=f"{row['run']} loss {row['loss']:.3f}")
            if row["step"] % log_every == 0:
                console.print(f"{row['run']} step {row['step']}: loss {row['loss']:.4f}, batch acc {row['batch_acc']:.3f}", highlight=False)

        run = run_train(config, on_step=on_step)
    table = Table(title="training runs", title_justify="left", box=None, pad_edge=False, collapse_padding=True,
                  header_style="bold underline")
    window = f"last {log_every}"
    columns = ("run", "procs", "step p50 ms", "img/s", "aggregate img/s", "scaling", "peak MiB",
               f"loss: step 1 -> mean of {window}", f"train acc, {window}", "held-out acc", "status")
    for col in columns:
        table.add_column(col, justify="left" if col in ("run", "status") else "right")
    notes: list[str] = []
    for r in run.frame.to_dict("records"):
        table.add_row(str(r["run"]), str(r["nproc"]), _num(r["step_ms_p50"], ".1f"), _num(r["images_per_s"], ".1f"),
                      _num(r["aggregate_images_per_s"], ".1f"), _num(r["scaling_efficiency"], ".2f"), _num(_scaled(r["peak_mem_train_bytes"], 2**20), ".1f"),
                      f"{_num(r['first_loss'], '.3f')} -> {_num(r['final_loss'], '.3f')}", _num(r["final_train_acc"], ".3f"),
                      _num(r["heldout_acc"], ".3f"), status_cell(r, notes, str(r["run"])))
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", highlight=False, markup=False)
    console.print(f"step lines above show one step's loss; the table's last loss and train accuracy are means over the {window} steps",
                  style="dim", highlight=False)
    console.print(closing_line(run.frame, f"{out}/train.csv") + f" (per-step rows in {out}/train_steps.csv)", highlight=False)
    if report:
        print_report(out)
    if run.interrupted:
        raise UserInterrupt(f"interrupted: the finished steps and runs are in {out}")
    if run.stopped:
        raise UserError(f"{run.stopped}; training stopped, the rows so far are in {out}")

"""Options that several commands share, defined once so that their names and help never drift apart. Those whose
help names the command or its unit are made by a function of that name."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Arch = Annotated[str, typer.Option("--arch", "-a", help="all, a name, a pattern ('resnet*'), a comma list, "
                                                        "timm:NAME or torchvision:NAME (patterns too), or "
                                                        "package.module:function.")]
AllMatching = Annotated[bool, typer.Option("--all-matching", help="Take every model a pattern matches, even above "
                                                                  "100 (timm:* is over a thousand).")]
Device = Annotated[str, typer.Option(help="cpu or cuda[:N].")]
BatchSizes = Annotated[str, typer.Option("--batch-size", "-b", help="Comma list of batch sizes.")]
Dtype = Annotated[str, typer.Option(help="fp32, or autocast to fp16 (CUDA) / bf16.")]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")]
CudnnBenchmark = Annotated[bool, typer.Option("--cudnn-benchmark/--no-cudnn-benchmark",
                                              help="cuDNN autotuning, applied by the process that measures.")]
Tf32 = Annotated[Optional[bool], typer.Option("--tf32/--no-tf32", help="TF32 for fp32 matmuls and convolutions "
                                              "(default: PyTorch's, fp32 matmuls and TF32 convolutions).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="torch threads in the measuring process (default: torch's).")]
InputSize = Annotated[Optional[int], typer.Option("--input-size", help="Square input size for every model (default: "
                                                                        "each model's own).")]
InputShape = Annotated[Optional[str], typer.Option("--input-shape", help="C,H,W of every model's input: any channel count, "
                                                                        "non-square (--input-size N is 3,N,N).")]
Output = Annotated[Optional[str], typer.Option("--output", help="What to take from a forward that returns a dict or a "
                                                                "tuple: its key, or its index (default: logits/out, or the first).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 for any row that is not ok (partial and oom included).")]
Formats = Annotated[str, typer.Option("--format", help="Comma list of csv, json, md, parquet (csv is always written).")]
Counter = Annotated[str, typer.Option(help="MACs and activations from: dispatch (meta device, fast) or fvcore (JIT trace).")]
Report = Annotated[bool, typer.Option("--report", help="Also write the HTML report (needs matplotlib).")]


def out(command: str):
    return Annotated[Optional[Path], typer.Option("--out", "-o", help=f"Results folder (default: a new runs/{command}/<time>, "
                                                                      f"and runs/{command}/latest).")]


def shard(units: str):
    return Annotated[Optional[str], typer.Option("--shard", help=f"I/N: measure shard I of N of the {units} (default: "
                                                                 "from torchrun or a Slurm array).")]


def isolate(what: str, default: str):
    return Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help=f"Measure {what} in its own child "
                                                                                 f"process (default: {default}).")]


def timeout(what: str):
    return Annotated[float, typer.Option("--timeout", help=f"Seconds {what} may go silent under isolation before its "
                                                           "child is killed.")]

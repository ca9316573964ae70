"""Options that several commands share, defined once so that their names and help never drift apart."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

CudnnBenchmark = Annotated[bool, typer.Option("--cudnn-benchmark/--no-cudnn-benchmark",
                                              help="cuDNN autotuning, applied by the process that measures.")]
Tf32 = Annotated[Optional[bool], typer.Option("--tf32/--no-tf32", help="TF32 for fp32 matmuls and convolutions "
                                              "(default: PyTorch's, fp32 matmuls and TF32 convolutions).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="torch threads in the measuring process (default: torch's).")]

"""The backend settings a measurement runs under, applied by the process that measures, and the context a row
reads back from that process's live state.

A row's context columns (cuDNN autotuning, TF32, the matmul precision, threads) are never copied from a config:
an isolated child that never applied cudnn.benchmark once wrote rows that said it was on. So every process that
measures (the sweep's own process, an --isolate child, a DDP rank) enters `applied(config)` first, and rows
take `live_context(...)`, read from torch at the time the row is finished."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from convbench._version import __version__
from convbench.results.environment import device_name, git_commit
from convbench.measure import ceiling
from convbench.run import peers


def _tf32_state(tf32: bool | None) -> tuple[str, bool]:
    """(float32 matmul precision, cuDNN TF32) for --tf32 on, off, or unset (PyTorch's own defaults: matmuls in
    full fp32, cuDNN convolutions allowed TF32)."""
    if tf32 is None:
        return "highest", True
    return ("high", True) if tf32 else ("highest", False)


def _snapshot() -> dict[str, Any]:
    state = {"benchmark": torch.backends.cudnn.benchmark, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
             "precision": torch.get_float32_matmul_precision(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["device"] = torch.cuda.current_device()
    return state


def _restore(state: dict[str, Any]) -> None:
    torch.backends.cudnn.benchmark = state["benchmark"]
    torch.backends.cudnn.allow_tf32 = state["cudnn_tf32"]
    torch.set_float32_matmul_precision(state["precision"])
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    if "device" in state:
        torch.cuda.set_device(state["device"])


def apply(config: Any) -> None:
    """Set what `config` asks for in this process: cuDNN autotuning, TF32 (matmul precision and cuDNN), the
    number of threads, and the current CUDA device (events, streams and allocator statistics follow it, so a
    cuda:1 run with device 0 current would time and measure the wrong GPU)."""
    torch.backends.cudnn.benchmark = bool(getattr(config, "cudnn_benchmark", True))
    precision, cudnn_tf32 = _tf32_state(getattr(config, "tf32", None))
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = cudnn_tf32
    threads = getattr(config, "threads", None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(getattr(config, "device", "cpu"))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


@contextlib.contextmanager
def applied(config: Any) -> Iterator[None]:
    """`apply(config)` for the length of the block, then the process's settings as they were (a notebook that
    profiles keeps its own)."""
    state = _snapshot()
    apply(config)
    try:
        yield
    finally:
        _restore(state)


@dataclass(frozen=True)
class FullFp32:
    """Settings for a check that must run in full fp32 whatever the run asked for (TF32 off), leaving cuDNN's
    autotuning as it is."""
    device: str = "cpu"
    tf32: bool = False
    cudnn_benchmark: bool = field(default_factory=lambda: torch.backends.cudnn.benchmark)


def _ceiling(device: str, dtype: str) -> str:
    peak = ceiling.cached(device)
    return peak.describe(dtype) if peak else ""


def live_context(device: str, dtype: str, channels_last: bool, compile: bool) -> dict[str, Any]:
    """The columns every row repeats, read now from this process, so that a row read alone says what it ran under."""
    return {
        "device": device,
        "device_name": device_name(device),
        "dtype": dtype,
        "channels_last": channels_last,
        "compile": compile,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
        "shards_on_host": peers.count(),
        "ceiling": _ceiling(device, dtype),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or "") if torch.backends.cudnn.is_available() else "",
        "convbench": __version__,
        "git_commit": git_commit(),
    }

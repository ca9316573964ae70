"""Execution modes: how a model's forward is run when it is timed.

- eager: the module as written;
- compile: torch.compile(module, dynamic=False), default mode, compiled afresh for each row (batch size);
- graphs: the forward captured once in a CUDA graph and replayed (CUDA only);
- compile+graphs: torch.compile(module, mode="reduce-overhead", dynamic=False), which captures CUDA graphs itself
  (CUDA only).

On a GPU a small forward is mostly the host launching kernels; graphs remove that launch cost, which is what
`graphs` measures against `eager`. The capture follows PyTorch's CUDA-graphs notes
(https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs): warm up on a side stream, capture with a static
input, replay; autocast's weight cache is off during capture, as those notes require."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from convbench.measure.device import autocast
from convbench.errors import UserError
from convbench.lists import parse_list

MODES = ("eager", "compile", "graphs", "compile+graphs")
CUDA_ONLY = ("graphs", "compile+graphs")


def validate_modes(modes: tuple[str, ...], device: str) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserError(f"unknown mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if not modes:
        raise UserError("--mode names no mode")
    needs_cuda = [m for m in modes if m in CUDA_ONLY]
    if needs_cuda and not device.startswith("cuda"):
        raise UserError(f"{' and '.join(needs_cuda)} capture CUDA graphs, which need --device cuda")


def modes_from_flags(mode: str | None, compile: bool, cuda_graphs: bool) -> tuple[str, ...]:
    """--mode wins; otherwise --compile and --cuda-graphs pick one mode (both: compile+graphs)."""
    if mode is not None:
        if compile or cuda_graphs:  # two answers to one question: refused rather than one of them ignored
            flags = " and ".join(f for f, on in (("--compile", compile), ("--cuda-graphs", cuda_graphs)) if on)
            raise UserError(f"--mode and {flags} both choose how to run; keep --mode (it takes compile, graphs and "
                            "compile+graphs)")
        return parse_list(mode, "--mode")
    if cuda_graphs:
        return ("compile+graphs",) if compile else ("graphs",)
    return ("compile",) if compile else ("eager",)


def compiled(model: nn.Module, graphs: bool = False) -> nn.Module:
    """torch.compile for one row: static shapes, from an empty cache. A wrapper reused at a second batch size
    recompiles with a dynamic batch dimension (dynamo's automatic dynamic shapes), so that row would time a
    dynamic-shape graph; and every model of one class shares its forward's code object, whose guards pile up
    across a sweep until dynamo's recompile limit makes it run eager without a word. Hence dynamic=False and a
    reset before each compilation (this forgets what else the process compiled)."""
    torch.compiler.reset()
    return torch.compile(model, dynamic=False, mode="reduce-overhead" if graphs else None)


def prepare(model: nn.Module, x: torch.Tensor, mode: str, device: torch.device, dtype: torch.dtype | None = None,
            warmup: int = 3) -> Callable[[], Any]:
    """A no-argument forward of `model` on `x` in `mode`, under inference mode and autocast to `dtype`; compiled
    modes compile for this input's shape alone."""
    if mode in CUDA_ONLY and device.type != "cuda":
        raise UserError(f"mode {mode} needs CUDA")
    if mode == "graphs":
        return capture_graph(model, x, device, dtype, warmup)
    module = compiled(model, graphs=mode == "compile+graphs") if mode != "eager" else model

    def forward() -> Any:
        with torch.inference_mode(), autocast(device.type, dtype):
            return module(x)
    return forward


def capture_graph(model: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None,
                  warmup: int = 3) -> Callable[[], Any]:
    static_x = x.clone()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), torch.inference_mode(), autocast(device.type, dtype, cache_enabled=False):
        for _ in range(max(1, warmup)):  # cuDNN autotuning and lazy initialisation happen here, not in the graph
            model(static_x)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), autocast(device.type, dtype, cache_enabled=False):
        static_out = model(static_x)

    def replay() -> Any:
        graph.replay()
        return static_out
    replay.graph = graph  # the graph lives as long as the forward that replays it
    return replay

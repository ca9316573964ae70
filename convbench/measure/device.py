"""The few things every measurer does differently on a GPU and on the CPU, in one place (timing apart, which is the
one clock's, convbench.measure.clock): autocast, the input a row runs on, and peak memory over a stretch of work.

CUDA: peaks are the caching allocator's over its baseline. CPU: the resident-set high-water mark of this process
(Linux; a process's peak RSS only rises, so it is reset before each stretch)."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch

from convbench.errors import UserError
from convbench.measure import rss

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def validate_device(device: str) -> None:
    """cpu, or cuda[:N] where torch sees a GPU; anything else is said in one line."""
    if device == "cpu":
        return
    if device.split(":")[0] != "cuda":
        raise UserError(f"unknown device {device!r}; choose cpu or cuda")
    if not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device here (torch "
                        f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)")


def autocast(device_type: str, dtype: torch.dtype | None, cache_enabled: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device_type`; fp32 (or None) runs as written. CUDA-graph capture needs
    cache_enabled=False (PyTorch's CUDA-graphs notes)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)


def input_batch(batch_size: int, shape: tuple[int, int, int], device: torch.device | str,
                channels_last: bool = False) -> torch.Tensor:
    """A random batch of `shape` (C, H, W) images on `device`, NHWC in memory when asked."""
    x = torch.randn(batch_size, *shape, device=torch.device(device))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class PeakMemory:
    """Peak memory of a stretch of work in this process: `reset()` before it, `peak()` after it. CUDA: the
    allocator's peak over the memory allocated at the reset; CPU: the resident set's high-water mark over the
    resident size at the reset (Linux), NaN where neither can be read."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.available = self.cuda or rss.available()
        self._base = 0

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self.available:
            self._base = rss.reset_high_water_mark()

    def peak(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self._base
        return rss.peak_since_reset(self._base) if self.available else math.nan

    def of(self, fn: Callable[[], Any], warm: bool = True) -> float:
        """The peak of one call of `fn`, with `warm` run once unmeasured first: cuDNN's autotuning trials allocate
        their workspaces at the first call of every new shape, and first-call allocations (thread pools, kernels'
        scratch) are not the model's own."""
        if warm:
            fn()
        self.reset()
        fn()
        return self.peak()

"""Memory: bytes saved for backward (exact, counted), and measured peaks on CUDA and on the CPU.

- `saved_bytes`: unique storages that autograd saves during one training-mode forward at the given batch
  size (parameters included), and `saved_act_bytes` without the parameters, buffers and autocast's
  low-precision copies of the parameters. Counted where the row runs: autocast policies differ by device
  (CPU autocast runs batch norm in fp32, CUDA's in the input dtype), and so do some kernels' saved extras.
- CUDA peaks: allocator peak over the baseline, measured in their own pass (never inside the timing loop).
- CPU peaks: torch's allocations are invisible to tracemalloc, and a process's peak RSS only rises, so each
  (model, batch) is measured in a child process (`python -m convbench.measure.cpu_peak`) that resets the
  kernel's high-water mark (/proc/self/clear_refs) before each pass.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import torch
from torch import nn

from convbench.measure.device import DTYPES, PeakMemory, autocast
from convbench import children
from convbench.errors import error_text
from convbench.measure.complexity import materialize
from convbench.zoo.meta import data_dependent
from convbench.zoo.meta import fast_batch_norm
from convbench.zoo.outputs import logits_of
from convbench.zoo.specs import ModelSpec


def _is_parameter_copy(t: torch.Tensor, param_ids: set[int]) -> bool:
    """Autocast saves a low-precision cast of each weight; that is parameter memory, not activation memory."""
    fn = t.grad_fn
    if fn is None or type(fn).__name__ != "ToCopyBackward0":
        return False
    return any(type(nf).__name__ == "AccumulateGrad" and id(nf.variable) in param_ids for nf, _ in fn.next_functions if nf is not None)


def count_saved_bytes(model: nn.Module, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> dict[str, int]:
    own = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    param_ids = {id(p) for p in model.parameters()}
    kept: dict[int, torch.UntypedStorage] = {}
    parameter_like: set[int] = set()

    def pack(t: torch.Tensor) -> int:
        storage = t.untyped_storage()
        # Keep the storage (the memory autograd would keep), never the tensor: a packed tensor is held by its own
        # grad_fn's graph, a cycle through C++ that the garbage collector cannot see, so every count leaked the
        # whole graph (2.8 GiB per resnet50 b64 bf16 on a GPU). Holding the storage also keeps its address, the
        # key, from being reused by a later tensor. The graph is never run backward, so a key is all it keeps.
        kept[storage._cdata] = storage
        if storage._cdata in own or _is_parameter_copy(t, param_ids):
            parameter_like.add(storage._cdata)
        return storage._cdata

    def unpack(_key: int) -> torch.Tensor:
        raise RuntimeError("count_saved_bytes builds a graph for counting only; it cannot run backward")

    was_training = model.training
    model.train()
    meta = x.device.type == "meta"
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack), torch.enable_grad(), \
                autocast(x.device.type if not meta else "cpu", autocast_dtype), fast_batch_norm() if meta else contextlib.nullcontext():
            model(x)
    finally:
        model.train(was_training)
    sizes = {key: storage.nbytes() for key, storage in kept.items()}
    kept.clear()
    total = sum(sizes.values())
    return {"saved_bytes": total, "saved_act_bytes": total - sum(sizes[k] for k in parameter_like)}


def saved_bytes(spec: ModelSpec, batch_size: int, dtype: str = "fp32", device: str = "cpu") -> dict[str, int]:
    """Counted where the row runs: CUDA rows on the GPU (its autocast policy and kernels decide what is
    saved), CPU rows on the meta device at fp32 (shapes only, identical to CPU) or under CPU autocast."""
    shape = spec.batch_shape(batch_size)
    low_precision = None if dtype == "fp32" else DTYPES[dtype]
    if device.startswith("cuda"):
        model = materialize(spec.build("meta"), device)
        return count_saved_bytes(model, torch.zeros(shape, device=device), low_precision)
    if low_precision is None:
        try:
            return count_saved_bytes(spec.meta(), torch.zeros(shape, device="meta"))
        except Exception as exc:
            if not data_dependent(exc):
                raise  # a forward that reads its values is counted on zeros below, as its MACs are
    return count_saved_bytes(materialize(spec.build("meta")), torch.zeros(shape), low_precision)


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    """One forward and backward, the unit that training memory and the train pass measure."""
    model.zero_grad(set_to_none=True)
    logits_of(model(x)).float().sum().backward()


def peaks(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None, train: bool = True,
          reader: PeakMemory | None = None) -> dict[str, Any]:
    """Peaks of an inference forward and (with `train`) of a training step on x's device, measured in this process
    (a CPU peak needs a process of its own: `cpu_peaks_in_child`); `dtype` other than fp32 autocasts. On CUDA each
    pass runs once unmeasured first: cuDNN's autotuning trials (cudnn.benchmark) allocate their workspaces through
    PyTorch's allocator at the first call of every new shape, the backward's included, and would otherwise be taken
    for the model's own memory. On the CPU only the forward does (first-call thread pools and scratch); a training
    pass there is measured from a fresh high-water mark. A training pass that cannot run (batch norm over one
    value per channel) keeps the inference peak and says why in `mem_note`; the model is back in eval mode
    whatever failed."""
    memory = reader or PeakMemory(x.device)

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast(x.device.type, dtype):
            model(x)

    def train_pass() -> None:
        model.train()
        with autocast(x.device.type, dtype):
            train_step(model, x)
        model.zero_grad(set_to_none=True)

    try:
        result: dict[str, Any] = {"peak_mem_infer_bytes": memory.of(infer)}
        if train:
            try:
                result["peak_mem_train_bytes"] = memory.of(train_pass, warm=memory.cuda)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:
                model.zero_grad(set_to_none=True)
                result["mem_note"] = f"training pass failed: {error_text(exc, 200)}"
    finally:
        model.eval()
    return result


def cpu_peaks_in_child(spec: ModelSpec, batch_size: int, dtype: str, channels_last: bool, timeout: float = 900) -> dict[str, Any]:
    """Peak RSS growth of an inference pass and of a training step, each from a fresh high-water mark, in a process
    of its own (a process's peak RSS only rises)."""
    if not sys.platform.startswith("linux"):
        return {"mem_note": "CPU peak memory needs Linux (/proc/self/clear_refs)"}
    request = {"model": spec.name, "input_shape": list(spec.input_shape), "output": spec.output, "batch_size": batch_size,
               "dtype": dtype, "channels_last": channels_last}
    proc = children.run([sys.executable, "-m", "convbench.measure.cpu_peak", json.dumps(request)], timeout=timeout,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=children.env())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"mem_note": f"CPU peak child failed: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])

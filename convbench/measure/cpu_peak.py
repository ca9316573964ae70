"""Child process for CPU peak memory: `python -m convbench.measure.cpu_peak '<json request>'`.

Prints one JSON line with peak_mem_infer_bytes and peak_mem_train_bytes: the rise of the resident-set
high-water mark (VmHWM) over the resident size just before each pass."""
from __future__ import annotations

import ctypes
import json
import sys


def _rss_fields() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def _reset_high_water_mark() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _release_freed_memory() -> None:
    # Make large frees go back to the OS at once, so one pass's freed pages cannot hide the next one's peak.
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: fixed 64 KiB, no dynamic growth
        libc.malloc_trim(0)
    except OSError:
        pass


def measure(request: dict) -> dict:
    import torch

    from convbench.config import DTYPES
    from convbench.measure.complexity import materialize
    from convbench.measure.memory import train_step
    from convbench.specs import resolve_models

    _release_freed_memory()
    spec = resolve_models(request["model"], request["input_size"])[0]
    model = materialize(spec.build("meta"))
    x = torch.zeros(request["batch_size"], 3, spec.input_size, spec.input_size)
    if request["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = DTYPES[request["dtype"]]
    autocast = dict(device_type="cpu", dtype=dtype, enabled=dtype != torch.float32)

    def peak(fn) -> int:
        _release_freed_memory()
        _reset_high_water_mark()
        base = _rss_fields()["VmRSS"]
        fn()
        return _rss_fields()["VmHWM"] - base

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast(**autocast):
            model(x)

    def train() -> None:
        model.train()
        with torch.autocast(**autocast):
            train_step(model, x)
        model.zero_grad(set_to_none=True)

    infer()  # first-call allocations (thread pools, kernels' scratch) stay out of the measured pass
    result: dict = {"peak_mem_infer_bytes": peak(infer)}
    try:
        result["peak_mem_train_bytes"] = peak(train)
    except Exception as exc:  # e.g. batch norm over one value per channel: inference was still measured
        result["mem_note"] = f"training pass failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return result


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))

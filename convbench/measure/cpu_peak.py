"""Child process for CPU peak memory: `python -m convbench.measure.cpu_peak '<json request>'`.

Prints one JSON line with peak_mem_infer_bytes and peak_mem_train_bytes: the rise of the resident-set
high-water mark (VmHWM) over the resident size just before each pass."""
from __future__ import annotations

import json
import sys

from convbench.errors import error_text
from convbench.measure import rss


def measure(request: dict) -> dict:
    import torch

    from convbench.config import DTYPES, autocast
    from convbench.measure.complexity import materialize
    from convbench.measure.memory import train_step
    from convbench.specs import resolve_models

    rss.release_freed_memory()
    spec = resolve_models(request["model"], request["input_size"])[0]
    model = materialize(spec.build("meta"))
    x = torch.zeros(request["batch_size"], 3, spec.input_size, spec.input_size)
    if request["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = DTYPES[request["dtype"]]

    def peak(fn) -> int:
        base = rss.reset_high_water_mark()
        fn()
        return rss.peak_since_reset(base)

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast("cpu", dtype):
            model(x)

    def train() -> None:
        model.train()
        with autocast("cpu", dtype):
            train_step(model, x)
        model.zero_grad(set_to_none=True)

    infer()  # first-call allocations (thread pools, kernels' scratch) stay out of the measured pass
    result: dict = {"peak_mem_infer_bytes": peak(infer)}
    try:
        result["peak_mem_train_bytes"] = peak(train)
    except Exception as exc:  # e.g. batch norm over one value per channel: inference was still measured
        result["mem_note"] = f"training pass failed: {error_text(exc, 200)}"
    return result


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))

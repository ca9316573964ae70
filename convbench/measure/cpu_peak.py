"""Child process for CPU peak memory: `python -m convbench.measure.cpu_peak '<json request>'`.

Prints one JSON line with peak_mem_infer_bytes and peak_mem_train_bytes: the rise of the resident-set
high-water mark (VmHWM) over the resident size just before each pass (convbench.measure.memory.peaks)."""
from __future__ import annotations

import json
import sys

from convbench.measure import rss
from convbench.measure.complexity import materialize
from convbench.measure.device import DTYPES, input_batch
from convbench.measure.memory import peaks
from convbench.zoo.specs import resolve_models


def measure(request: dict) -> dict:
    import torch


    rss.release_freed_memory()
    spec = resolve_models(request["model"], tuple(request["input_shape"]), request.get("output"))[0]
    model = materialize(spec.build("meta"))
    x = input_batch(request["batch_size"], spec.input_shape, "cpu", request["channels_last"]).zero_()
    if request["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return peaks(model, x, DTYPES[request["dtype"]])


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))

"""Instructions of a model's forward, counted by callgrind (`convbench profile --metrics instructions`).

The parent (`instructions_per_image`) runs `python -m convbench.measure.counted_forward '<json request>'` under
valgrind (convbench.measure.instructions); that process builds the model from its spec, on zero-filled weights
(counts of the code path do not depend on weight values, and initialising them under the simulator costs
minutes), one thread, a seeded input, and runs the forward in the counted regions."""
from __future__ import annotations

import json
import sys
from typing import Any

from convbench.measure import instructions
from convbench.zoo.specs import ModelSpec


def request_for(spec: ModelSpec, batch_size: int, dtype: str, channels_last: bool) -> dict[str, Any]:
    return {"model": spec.name, "input_shape": list(spec.input_shape), "output": spec.output,
            "batch_size": batch_size, "dtype": dtype, "channels_last": channels_last}


def instructions_per_image(spec: ModelSpec, batch_size: int, dtype: str, channels_last: bool,
                           calls: int = instructions.CALLS, timeout: float = instructions.TIMEOUT_S) -> int:
    """Instructions one forward at `batch_size` executes, per image."""
    argv = [sys.executable, "-m", "convbench.measure.counted_forward",
            json.dumps(request_for(spec, batch_size, dtype, channels_last)), str(calls)]
    return round(instructions.count(argv, calls=calls, timeout=timeout) / batch_size)


def main(request: dict[str, Any], calls: int) -> None:
    import torch

    from convbench.measure.complexity import materialize
    from convbench.measure.device import DTYPES, autocast, input_batch
    from convbench.zoo.specs import resolve_models
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = resolve_models(request["model"], tuple(request["input_shape"]), request.get("output"))[0]
    model = materialize(spec.build("meta")).eval()
    if request["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    x = input_batch(request["batch_size"], spec.input_shape, "cpu", request["channels_last"])
    dtype = DTYPES[request["dtype"]]

    def forward() -> None:
        with torch.inference_mode(), autocast("cpu", dtype):
            model(x)
    instructions.counted_regions(forward, calls)
    instructions.leave()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), int(sys.argv[2]))

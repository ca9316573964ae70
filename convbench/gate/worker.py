"""One side's benchmark worker for `convbench gate`, and the timing protocol convbench's benchmarks share.

Standalone on purpose: it imports torch, the standard library and the one clock (convbench.measure.clock, itself
standalone), so that the gate can copy the two files into each side's scratch tree and run them there, and the
models it times, a cases module's bodies or a user's `package.module:function`, resolve to that side's own code
while both sides are timed by the same clock. The same functions time pytest-benchmark rounds (convbench.bench),
so the gate and the suites time exactly the same thing.

The protocol. Each timed round runs a fixed reference workload a few times and then the body once, and returns
(body seconds, the fastest reference seconds so far): load only ever adds time, so the fastest reference is the
figure the machine can reproduce, and body / reference cancels the machine's speed. A case is slowed on purpose
(`--prove`) here, never in the user's code: the body runs `factor` times over (whole runs, then a busy-wait for the
fraction of one, timed on the same round).

Driven over stdin/stdout one JSON line at a time. Requests: {"op": "info"}, {"op": "setup", "name"},
{"op": "round", "name"}, {"op": "drop", "name"}, {"op": "quit"}; replies one JSON object each, {"error": text}
when a request failed. CONVBENCH_GATE_CPU pins the worker to one CPU (the gate pins both sides to the same one);
CONVBENCH_GATE_SLOW names the cases to slow, CONVBENCH_GATE_FACTOR by how much."""
import gc
import importlib
import json
import math
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

if __package__:
    from convbench.measure import clock, instructions
else:  # copied into a side's tree, where `convbench` is that side's: the clock and the counter are the gate's own
    import convbench_gate_clock as clock
    import convbench_gate_instructions as instructions

SLOW_ENV, FACTOR_ENV = "CONVBENCH_GATE_SLOW", "CONVBENCH_GATE_FACTOR"


def _timed(fn, device):
    """Seconds of one call, by the one clock."""
    return clock.time_ms(fn, device) / 1e3


_WORKLOADS = {}


def reference_workload(device):
    """A fixed conv stack, the kind of work every benchmark here does (about 45 M MACs)."""
    key = str(device)
    if key not in _WORKLOADS:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(64, 32, 1)).to(device).eval()
        x = torch.randn(1, 32, 28, 28, device=device)

        def run():
            with torch.inference_mode():
                net(x)
        _WORKLOADS[key] = run
    return _WORKLOADS[key]


def timed_round(fn, device):
    """One timed round of `fn`: returns (t_fn, t_ref) in seconds, where t_ref is the fastest reference run seen so
    far (20 before the first round, 3 more each round)."""
    reference = reference_workload(device)
    fastest = [min(_timed(reference, device) for _ in range(20))]

    def one_round():
        fastest[0] = min(fastest[0], *(_timed(reference, device) for _ in range(3)))
        return _timed(fn, device), fastest[0]
    return one_round


def slowed(fn, factor):
    """`fn` made `factor` times slower: whole extra runs, then a busy-wait for the fraction of one run's time."""
    if factor <= 1:
        return fn
    whole, fraction = int(math.floor(factor)), factor - math.floor(factor)

    def slower():
        once = _timed(fn, torch.device("cpu"))  # host time of the call: what a busy-wait on the host can add
        for _ in range(whole - 1):
            fn()
        clock.spin(fraction * once)
    return slower


def repeated(fn, factor):
    """`fn` made to do `factor` (1 or more) times its work, deterministically (for a count of instructions, where a
    busy-wait would count whatever the clock allowed): each call runs it once, and once more as often as the fraction
    asks. Every counted case is wrapped, at 1 where not slowed, so that both sides count the same wrapper."""
    calls = [0]

    def more():
        k = calls[0]
        calls[0] += 1
        for _ in range(math.floor((k + 1) * factor) - math.floor(k * factor)):
            fn()
    return more


def _timm_model(name, shape):
    import timm
    return timm.create_model(name, pretrained=False)


def _torchvision_model(name, shape):
    # As convbench.zoo.libraries builds it (this file stands alone): weights=None, and a vision transformer's grid
    # built for the input its default weights were trained at.
    from torchvision import models
    extra = {"image_size": shape[1]} if name.startswith("vit_") and shape[1] != 224 else {}
    return models.get_model(name, weights=None, **extra)


# timm:NAME and torchvision:NAME: the installed library's model, the same on both sides (the gate passes the input
# shape the library publishes, resolved by convbench before the workers start).
LIBRARY_BUILDS = {"timm": _timm_model, "torchvision": _torchvision_model}


def _forward(module, x):
    def run():
        with torch.inference_mode():
            module(x)
    return run


class ModelCase:
    """A model's forward at one batch size: a zoo name (convbench.create_model) or a `package.module:function`
    resolved against this side's tree."""

    def __init__(self, spec, batch_size, input_shape, device, rounds, warmup=3):
        self.spec, self.batch_size, self.input_shape, self.device = spec, batch_size, input_shape, device
        self.rounds, self.warmup = rounds, warmup
        self.name = f"{spec}[b{batch_size}]"

    def _build(self):
        prefix, colon, attr = self.spec.partition(":")
        if prefix in LIBRARY_BUILDS:
            return LIBRARY_BUILDS[prefix](attr, self._shape())
        if colon:
            return getattr(importlib.import_module(prefix), attr)()
        from convbench.zoo.registry import create_model  # a zoo model: this side's convbench
        return create_model(self.spec)

    def _shape(self):
        if self.input_shape:
            return tuple(self.input_shape)
        if ":" in self.spec:
            return (3, 224, 224)
        from convbench.zoo.registry import get_model_info
        size = get_model_info(self.spec).input_size
        return (3, size, size)

    def body(self):
        torch.manual_seed(0)
        device = torch.device(self.device)
        with warnings.catch_warnings():  # a library's notices while it builds (torchvision's init_weights) are not ours
            warnings.simplefilter("ignore")
            module = self._build().to(device).eval()
        return _forward(module, torch.randn(self.batch_size, *self._shape(), device=device))


def model_case(arch, batch_size=1, input_shape=None, device="cpu", rounds=20, warmup=3):
    """A model's forward at one batch size, named as the gate names it: `arch[bN]`. `arch` is a zoo name or
    `package.module:function`; `input_shape` is C, H, W (default: the zoo model's own, else 3, 224, 224)."""
    return ModelCase(arch, batch_size, list(input_shape) if input_shape else None, device, rounds, warmup)


def spec_cases(specs, device):
    """{name: ModelCase} from the gate's --arch: one case per model and batch size, named `spec[bN]`."""
    cases = (model_case(s["arch"], s["batch_size"], s.get("input_shape"), device, s["rounds"], s.get("warmup", 3))
             for s in specs)
    return {case.name: case for case in cases}


@dataclass(frozen=True)
class Case:
    """A benchmark: `make()` builds what it needs and returns the call to time."""
    name: str
    make: Callable[[], Callable[[], Any]]
    rounds: int = 20
    warmup: int = 3

    def body(self):
        return self.make()


def load_cases(source, device):
    if "specs" in source:
        return spec_cases(source["specs"], device)
    return importlib.import_module(source["cases"]).gate_cases(device)


def _serve(source, device, reply):
    cases = load_cases(source, device)
    pattern, factor = os.environ.get(SLOW_ENV), float(os.environ.get(FACTOR_ENV) or 2.0)
    rounds = {}
    for line in sys.stdin:
        request = json.loads(line)
        op, name = request.get("op"), request.get("name")
        try:
            if op == "info":
                reply({"names": list(cases), "rounds": {n: c.rounds for n, c in cases.items()}})
            elif op == "setup":
                body = cases[name].body()
                if pattern and pattern in name:
                    body = slowed(body, factor)
                one_round = timed_round(body, torch.device(device))
                for _ in range(cases[name].warmup):
                    one_round()
                rounds[name] = one_round
                reply({"ok": True})
            elif op == "round":
                seconds, reference = rounds[name]()
                reply({"seconds": seconds, "reference": reference})
            elif op == "drop":
                rounds.pop(name, None)
                gc.collect()
                reply({"ok": True})
            elif op == "quit":
                reply({"ok": True})
                return
            else:
                reply({"error": f"unknown op {op!r}"})
        except Exception as exc:  # the parent decides what a failed benchmark means
            reply({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})


def _count(source, device, name, calls):
    """One case's counted regions, in a process valgrind runs (--count): warm-up outside them, one thread."""
    torch.set_num_threads(1)
    case = load_cases(source, device)[name]
    body = case.body()
    pattern, factor = os.environ.get(SLOW_ENV), float(os.environ.get(FACTOR_ENV) or 2.0)
    body = repeated(body, factor if pattern and pattern in name else 1.0)
    sync = (lambda: torch.cuda.synchronize(device)) if str(device).startswith("cuda") else (lambda: None)

    def call():
        body()
        sync()
    instructions.counted_regions(call, calls)
    import threading
    return {"ok": True, "threads": threading.active_count()}


def main():
    if len(sys.argv) > 3 and sys.argv[3] == "--count":
        result = _count(json.loads(sys.argv[1]), sys.argv[2], sys.argv[4], int(sys.argv[5]))
        instructions.leave(json.dumps(result))
    cpu = os.environ.get("CONVBENCH_GATE_CPU")
    if cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
        torch.set_num_threads(1)  # one core: a second thread would only fight the first
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)               # whatever the code under test prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def reply(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        _serve(json.loads(sys.argv[1]), sys.argv[2], reply)
    except Exception as exc:
        traceback.print_exc()
        reply({"error": f"worker failed to start: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})


if __name__ == "__main__":
    main()

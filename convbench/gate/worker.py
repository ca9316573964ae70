"""A benchmark worker for one side of `convbench gate`, driven over stdin/stdout one JSON line at a time.

It imports nothing of convbench's own: the gate copies this file into each side's scratch tree and runs it
there, so that the cases module, and through it the library code under test, resolve to that side's tree.
The cases module exposes `gate_cases(device) -> {name: case}`; a case has `rounds`, `warmup`, and `setup()`,
which builds what it needs and returns one timed round: a callable giving (seconds, reference seconds).
CONVBENCH_GATE_CPU pins the worker to one CPU: the gate pins both sides to the same one, so that whatever
that core suffers (a busy sibling thread, a neighbour's interrupts) it suffers for both.

Requests: {"op": "info"}, {"op": "setup", "name"}, {"op": "round", "name"}, {"op": "drop", "name"}, {"op": "quit"}.
Replies: one JSON object each; {"error": text} when the request failed."""
import gc
import importlib
import json
import os
import sys
import traceback


def _serve(cases_module: str, device: str, reply) -> None:
    cases = importlib.import_module(cases_module).gate_cases(device)
    rounds = {}
    for line in sys.stdin:
        request = json.loads(line)
        op, name = request.get("op"), request.get("name")
        try:
            if op == "info":
                reply({"names": list(cases), "rounds": {n: c.rounds for n, c in cases.items()}})
            elif op == "setup":
                one_round = cases[name].setup()
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


def main() -> None:
    cpu = os.environ.get("CONVBENCH_GATE_CPU")
    if cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)               # whatever the code under test prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        _serve(sys.argv[1], sys.argv[2], reply)
    except Exception as exc:
        traceback.print_exc()
        reply({"error": f"worker failed to start: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})


if __name__ == "__main__":
    main()

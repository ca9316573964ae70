"""Base and head timed in lockstep: round k of a benchmark runs on one side and at once on the other (the
order alternating), so whatever the machine does meanwhile (a neighbour's load, frequency, memory bandwidth)
lands on both halves of a pair. Each pair gives one ratio head / base."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Protocol

from convbench import children
from convbench.measure.paired import median_ci
from convbench.run.isolate import LineReader

WORKER_MODULE = "convbench_gate_worker"


class WorkerError(RuntimeError):
    pass


class Side(Protocol):
    label: str

    def info(self) -> dict[str, int]: ...          # benchmark name -> rounds
    def setup(self, name: str) -> None: ...
    def round(self, name: str) -> tuple[float, float]: ...   # (seconds, reference seconds)
    def drop(self, name: str) -> None: ...
    def close(self) -> None: ...


class Worker:
    """One side's worker process (convbench/gate/worker.py copied into its tree), timing the cases `source` names:
    {"cases": "package.module"} or {"specs": [...]} (the gate's --arch)."""

    def __init__(self, label: str, tree: Path, source: dict, device: str, env_changes: dict[str, str | None],
                 timeout: float, import_roots: tuple[str, ...] = (".",)) -> None:
        self.label, self.timeout = label, timeout
        shutil.copy2(Path(__file__).with_name("worker.py"), tree / f"{WORKER_MODULE}.py")
        env = dict(os.environ)
        # The side's own tree first: its package, not the one the gate runs from, is the code under test.
        env["PYTHONPATH"] = os.pathsep.join([*(str(tree / r) for r in import_roots), str(tree),
                                             *filter(None, [env.get("PYTHONPATH")])])
        for key, value in env_changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self._stderr = tempfile.TemporaryFile("w+")
        self._proc = children.popen([sys.executable, "-m", WORKER_MODULE, json.dumps(source), device], cwd=tree, env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._reader = LineReader(self._proc.stdout)

    def _request(self, **message) -> dict:
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.label} worker died{self._last_words()}") from None
        line = self._reader.readline(self.timeout)
        if line is None:
            self._proc.kill()
            raise WorkerError(f"{self.label} worker gave no answer to {message.get('op')} {message.get('name', '')} "
                              f"within {self.timeout:.0f} s")
        if not line:
            raise WorkerError(f"{self.label} worker died{self._last_words()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def _last_words(self) -> str:
        self._proc.wait(timeout=30)
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().strip().splitlines() if ln.strip()]
        return f" (exit {self._proc.returncode}): {lines[-1]}" if lines else f" (exit {self._proc.returncode})"

    def info(self) -> dict[str, int]:
        return self._request(op="info")["rounds"]

    def setup(self, name: str) -> None:
        self._request(op="setup", name=name)

    def round(self, name: str) -> tuple[float, float]:
        reply = self._request(op="round", name=name)
        return float(reply["seconds"]), float(reply["reference"])

    def drop(self, name: str) -> None:
        self._request(op="drop", name=name)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._request(op="quit")
                self._proc.wait(timeout=30)
            except (WorkerError, OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        self._reader.close()
        self._stderr.close()


Sample = tuple[float, float]                           # (seconds, fastest reference seconds) of one round
Pairs = dict[str, list[list[tuple[Sample, Sample]]]]   # benchmark -> one list of (base, head) per pass


def shared_cpu() -> str | None:
    """One CPU for both sides (the last this process may use): they never run at once, and on one core they
    see the same cache sizes, the same sibling-thread load and the same interrupts. Measured on the 2-core CI
    machine with identical code on both sides: paired ratios within 0.91-1.02 pinned, 0.80-1.32 unpinned."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return os.environ.get("CONVBENCH_GATE_CPU") or str(max(os.sched_getaffinity(0)))


# Rounds beyond a case's own, at most, while its pass's interval still straddles the limit (a sequential test):
# a clear case stops at its own rounds, one near the limit gets up to this many times as many pairs.
MORE_ROUNDS = 3
STEP = 4


def undecided(got: list[tuple[Sample, Sample]], limit: float | None) -> bool:
    """Whether the pairs so far leave the ratio's 95% interval on both sides of `limit`."""
    if limit is None:
        return False
    _, lo, hi = median_ci([h[0] / b[0] for b, h in got])
    return lo <= limit <= hi


def lockstep(base: Side, head: Side, names: list[str], rounds: dict[str, int], pairs: Pairs,
             skipped: dict[str, str], head_first: bool = False, on_benchmark: Callable[[str], None] | None = None,
             limit: float | None = None) -> None:
    """Add one pass of (base, head) figures for each benchmark to `pairs`: its own rounds, then more (up to
    MORE_ROUNDS times as many) while the interval of the pass's ratio still straddles `limit`. A benchmark the base
    cannot set up is skipped with the reason (it is new); one the head cannot run is an error of the candidate."""
    for name in names:
        if on_benchmark:
            on_benchmark(name)
        try:
            base.setup(name)
        except WorkerError as exc:
            skipped[name] = f"the base cannot run it: {exc}"
            continue
        head.setup(name)
        got: list[tuple[Sample, Sample]] = []
        pairs.setdefault(name, []).append(got)
        budget = rounds[name] * MORE_ROUNDS
        k = 0
        while k < rounds[name] or (k < budget and undecided(got, limit)):
            for _ in range(STEP if k >= rounds[name] else 1):
                if (k % 2 == 0) != head_first:
                    b = base.round(name)
                    h = head.round(name)
                else:
                    h = head.round(name)
                    b = base.round(name)
                got.append((b, h))
                k += 1
        base.drop(name)
        head.drop(name)

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
from convbench import stats
from convbench.measure import clock, instructions
from convbench.run.isolate import LineReader

WORKER_MODULE = "convbench_gate_worker"
CLOCK_MODULE = "convbench_gate_clock"  # the worker imports these by these names in a side's tree
COUNTER_MODULE = "convbench_gate_instructions"


class WorkerError(RuntimeError):
    pass


class SideWorker(Protocol):
    label: str

    def info(self) -> dict[str, int]: ...          # benchmark name -> rounds
    def setup(self, name: str) -> None: ...
    def round(self, name: str) -> tuple[float, float]: ...   # (seconds, reference seconds)
    def drop(self, name: str) -> None: ...
    def close(self) -> None: ...


def copy_worker(tree: Path) -> None:
    """The worker and what it times or counts with, into a side's tree under names no package there can shadow."""
    shutil.copy2(Path(__file__).with_name("worker.py"), tree / f"{WORKER_MODULE}.py")
    shutil.copy2(Path(clock.__file__), tree / f"{CLOCK_MODULE}.py")
    shutil.copy2(Path(instructions.__file__), tree / f"{COUNTER_MODULE}.py")


def side_env(tree: Path, env_changes: dict[str, str | None], import_roots: tuple[str, ...] = (".",)) -> dict[str, str]:
    """The environment of a side's process: its own tree first on the path (its package, not the one the gate runs
    from, is the code under test), with `env_changes` applied (None removes a variable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(tree / r) for r in import_roots), str(tree),
                                         *filter(None, [env.get("PYTHONPATH")])])
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class Worker:
    """One side's worker process (convbench/gate/worker.py copied into its tree), timing the cases `source` names:
    {"cases": "package.module"} or {"specs": [...]} (the gate's --arch)."""

    def __init__(self, label: str, tree: Path, source: dict, device: str, env_changes: dict[str, str | None],
                 timeout: float, import_roots: tuple[str, ...] = (".",)) -> None:
        self.label, self.timeout = label, timeout
        copy_worker(tree)
        env = side_env(tree, env_changes, import_roots)
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


# A group-sequential design fixed in advance: each pass looks at its pairs after a case's own rounds and, while the
# interval still straddles the limit, after twice and three times as many. Every look's interval is at the level
# that keeps all looks of all passes together at 95% (stats.looks_level), so looking again costs no confidence.
LOOKS_PER_PASS = 3
LEVEL = 0.95


def look_level(passes: int) -> float:
    """The level of each look's interval when a gate makes `passes` passes."""
    return stats.looks_level(LEVEL, passes * LOOKS_PER_PASS)


def ratios(got: list[tuple[Sample, Sample]]) -> list[float]:
    return [h[0] / b[0] for b, h in got]


def undecided(pooled: list[float], limit: float | None, level: float) -> bool:
    """Whether the ratios so far leave the interval at `level` on both sides of `limit` (or give none yet)."""
    if limit is None:
        return False
    lo, hi = stats.median_interval(pooled, level)
    return lo != lo or lo <= limit <= hi


def lockstep(base: SideWorker, head: SideWorker, names: list[str], rounds: dict[str, int], pairs: Pairs,
             skipped: dict[str, str], head_first: bool = False, on_benchmark: Callable[[str], None] | None = None,
             limit: float | None = None, level: float = LEVEL) -> None:
    """Add one pass of (base, head) figures for each benchmark to `pairs`: its own rounds, then as many again, twice
    at most, while the interval at `level` of all its passes' ratios so far still straddles `limit`. A benchmark the
    base cannot set up is skipped with the reason (it is new); one the head cannot run is an error of the candidate."""
    for name in names:
        if on_benchmark:
            on_benchmark(name)
        try:
            base.setup(name)
        except WorkerError as exc:
            skipped[name] = f"the base cannot run it: {exc}"
            continue
        head.setup(name)
        earlier = [r for got in pairs.get(name, []) for r in ratios(got)]
        got: list[tuple[Sample, Sample]] = []
        pairs.setdefault(name, []).append(got)
        k = 0
        for look in range(LOOKS_PER_PASS):
            if look and not undecided(earlier + ratios(got), limit, level):
                break
            for _ in range(rounds[name]):
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

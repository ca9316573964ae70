"""The GPU acceptance as plans of calls that each fit a short stay on a GPU machine (at most 9 minutes of wall time).

    python benchmarks/gpu_plan.py accept                # the first call: every CUDA code path, in one call
    python benchmarks/gpu_plan.py zoo-bf16-1            # the second plan, one call each, once `accept` has passed
    python benchmarks/gpu_plan.py --dry-run all         # every step of both plans on the CPU, tiny sizes (CI runs it)
    python benchmarks/gpu_plan.py --list                # the plans, their steps, what each proves and its limit

A plan is a list of steps ordered by what they prove. Each step runs under a share of what is left of the
call's budget: it gets at most its own limit, never more than the budget minus a margin for the tarball, and is
skipped (and says so) when less than its floor is left, so the call always ends in time. A step that runs past
its share gets SIGINT, as Ctrl-C would: convbench's writers finish (every row so far, the md/json/parquet files)
before it exits; 20 s later the step's process group is killed. After every step the results folder is tarred
to $OUT/results.tgz (when $OUT is set), so a call cut short still returns what finished.

Results go to results/<gpu-name>/ (on the CPU, --dry-run: runs/gpu-dry-run/<cpu-name>/); steps.json there lists
each step's outcome, seconds, limit and share; logs/<step>.log holds its output."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 540.0          # one call of at most 9 minutes
TAR_MARGIN_S = 15.0       # kept back for the last tarball and steps.json
GRACE_S = 20.0            # after SIGINT, before the step's process group is killed


@dataclass(frozen=True)
class Target:
    """Where a plan runs: a GPU, or (dry run) the CPU with the CUDA-only parts swapped for their CPU equivalents
    and tiny sizes, so that the script itself is proven before a GPU minute is spent on it."""
    dry: bool

    @property
    def slack(self) -> float:
        """Times each step's limit (and the budget): a dry run proves the commands, not their GPU durations, and a
        CPU runner's start-up costs (importing torch, counting) are its own; only a hung step should be cut there."""
        return 3.0 if self.dry else 1.0

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def batches(self, sizes: str) -> str:
        return "1,2" if self.dry else sizes

    def dtype(self, dtype: str) -> str:
        return "bf16" if self.dry and dtype == "fp16" else dtype

    def modes(self, modes: str) -> str:
        if not self.dry:
            return modes
        swapped = {"graphs": "eager", "compile+graphs": "compile"}
        return ",".join(dict.fromkeys(swapped.get(m, m) for m in modes.split(",")))

    def size(self, *args: str) -> list[str]:
        """Options that make a step tiny on the CPU (an input size every zoo model accepts)."""
        return list(args) if self.dry else []


@dataclass
class Step:
    name: str
    proves: str
    limit: float               # seconds this step may take at most
    floor: float               # seconds it needs to be worth starting
    argv: list[str]
    outcome: str = "not run"
    seconds: float = 0.0
    share: float = 0.0
    rc: int | None = None


def convbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "convbench", *args]


def _profile(t: Target, dest: Path, name: str, arch: str, batches: str, dtype: str, modes: str, *extra: str) -> list[str]:
    return convbench("profile", "--arch", arch, "--device", t.device, "--batch-size", t.batches(batches), "--dtype",
                     t.dtype(dtype), "--mode", t.modes(modes), "--format", "csv,md,json", "--out", str(dest / name),
                     *extra, *t.size("--input-size", "80", "--min-time", "0.05", "--warmup", "1"))


def accept_steps(t: Target, dest: Path) -> list[Step]:
    """The first call: every CUDA code path once, the most telling first, torch.compile last."""
    tiny = t.size("--input-size", "32")
    return [
        Step("selfcheck", "event timer against a known spin and blocked_autorange; nothing held after a sweep; counts "
             "on the device; eager and graphs; an isolated child that applies its own settings; fp32/bf16/fp16 training",
             120, 45, convbench("selfcheck", "--device", t.device, "--quick", "--out", str(dest / "selfcheck"))),
        Step("ceiling", "measured peak per dtype (GEMM and convolutions, the kernel named) and bandwidth, beside the "
             "datasheet; cached for the steps after it", 45, 20,
             convbench("ceiling", "--device", t.device, "--dtype", "fp32,bf16" if t.dry else "fp32,bf16,fp16", "--refresh",
                       "--out", str(dest / "ceiling"))),
        Step("profile", "the headline sweep, isolated: a ResNet, GoogLeNet, Inception v3, a VGG at batch 1 and 256, "
             "bf16 channels_last, eager and graphs; device time and busy share in every mode; memory peaks after warm-up",
             150, 60, _profile(t, dest, "profile", "resnet50,googlenet,inception_v3,vgg16", "1,256", "bf16", "eager,graphs",
                               "--channels-last", "--min-time", "0.5")),
        Step("by-layer", "per-module CPU time from host ranges and device time from kernels; a Chrome trace",
             45, 20, _profile(t, dest, "by-layer", "resnet50", "32", "bf16", "eager", "--channels-last", "--by-layer",
                              "--min-time", "0.3")),
        Step("compare-graphs", "paired timing of replayed CUDA graphs, device-time ratios, the ResNeXt forms' fp32 check",
             45, 20, convbench("compare", "grouped", "--device", t.device, "--batch-size", t.batches("1,64"), "--dtype",
                               "bf16", "--mode", t.modes("graphs"), "--pairs", "9", "--out", str(dest / "compare-graphs"),
                               *t.size("--shape", "64,8,8"))),
        Step("train-bf16", "a training loop in bf16 autocast, channels_last: step time, peak after warm-up, loss",
             45, 20, convbench("train", "--arch", "resnet50", "--steps", "30" if not t.dry else "3", "--batch-size",
                               "64" if not t.dry else "4", "--device", t.device, "--dtype", "bf16", "--channels-last",
                               "--out", str(dest / "train-bf16"), *tiny)),
        Step("train-fp16", "fp16 autocast with its gradient scaler",
             35, 15, convbench("train", "--arch", "resnet18", "--steps", "30" if not t.dry else "3", "--batch-size",
                               "64" if not t.dry else "4", "--device", t.device, "--dtype", t.dtype("fp16"),
                               "--out", str(dest / "train-fp16"), *tiny)),
        Step("fidelity", "convbench's timer against torch.utils.benchmark at a busy batch (1.00 +- 0.03) and at batch 1",
             45, 20, [sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--device", t.device, "--model",
                      "resnet50" if not t.dry else "resnet18", "--batch-size", t.batches("256,1"), "--dtype", "bf16",
                      "--channels-last", "--rounds", "6" if not t.dry else "2", "--seconds", "0.3" if not t.dry else "0.05",
                      "--out", str(dest / "fidelity.json"), *t.size("--input-size", "32")]),
        # On the CPU these skip, which still proves that the tests named here exist.
        Step("cuda-tests", "the unit tests that only run with CUDA: a sweep gives back all its memory, graphs match eager",
             45, 20, [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "no:randomly",
                      "tests/test_isolation.py::test_a_cuda_sweep_in_one_process_gives_back_all_its_memory",
                      "tests/test_modes.py::test_graphs_replay_matches_eager_and_carries_device_time"]),
        Step("compile", "torch.compile and compile+graphs per batch size, static shapes, memory of the eager module",
             120, 60, _profile(t, dest, "profile-compile", "resnet18", "1,64", "bf16", "eager,compile,compile+graphs",
                               "--channels-last", "--min-time", "0.3")),
        Step("selfcheck-modes", "every mode, the compiled ones included, matches eager's output",
             75, 45, convbench("selfcheck", "--device", t.device, "--check", "modes", "--out", str(dest / "selfcheck-modes"))),
        Step("report", "the report of the folder", 20, 8, convbench("report", str(dest))),
    ]


def _zoo_part(index: int, parts: int) -> str:
    """The zoo split into `parts` lists of about equal cost (MACs per image, the committed exact counts), each in
    zoo order."""
    models = json.loads((ROOT / "results" / "baseline" / "static.json").read_text())["models"]
    loads, groups = [0] * parts, [set() for _ in range(parts)]
    for name in sorted(models, key=lambda n: -models[n]["macs"]):
        i = loads.index(min(loads))
        loads[i] += models[name]["macs"]
        groups[i].add(name)
    return ",".join(n for n in models if n in groups[index])


def sweep_steps(name: str, t: Target, dest: Path) -> list[Step]:
    """The second plan: one call each, run only once `accept` has passed."""
    match = re.fullmatch(r"zoo-(bf16|fp32)-([12])", name)
    if match:
        dtype, part = match.group(1), int(match.group(2))
        arch = _zoo_part(part - 1, 2) if not t.dry else ("resnet18", "googlenet")[part - 1]
        extra = ["--channels-last"] if dtype == "bf16" else []
        return [Step(name, f"half {part} of the zoo at batch 1 and 256 in {dtype}, eager and graphs", 520, 60,
                     _profile(t, dest, name, arch, "1,256", dtype, "eager,graphs", *extra, "--min-time", "0.3"))]
    match = re.fullmatch(r"zoo-compile-([12])", name)
    if match:
        arch = ("resnet50,resnet18", "googlenet,inception_v3")[int(match.group(1)) - 1] if not t.dry else "resnet18"
        return [Step(name, f"{arch} in all four modes at batch 1 and 256", 520, 60,
                     _profile(t, dest, name, arch, "1,256", "bf16", "eager,graphs,compile,compile+graphs", "--channels-last",
                              "--min-time", "0.3"))]
    if name == "compare":
        block_shape = t.size("--shape", "64,8,8")
        return [Step("compare-all", "every comparison at batch 1, 64 and 256 in bf16, eager", 300, 60,
                     convbench("compare", "all" if not t.dry else "reduction", "--device", t.device, "--batch-size",
                               t.batches("1,64,256"), "--dtype", "bf16", "--out", str(dest / "compare"), *block_shape)),
                *(Step(f"compare-graphs-{c}", f"{c} again as graph replays", 60, 25,
                       convbench("compare", c, "--device", t.device, "--batch-size", t.batches("1,64"), "--dtype", "bf16",
                                 "--mode", t.modes("graphs"), "--out", str(dest / f"compare-graphs-{c}"), *block_shape))
                  for c in (("factorization", "asymmetric", "reduction", "grouped") if not t.dry else ("reduction",)))]
    if name == "train":
        steps, batch = ("100", "64") if not t.dry else ("3", "4")
        # bf16 training is proven by accept's train-bf16; on a CPU without bf16 units a side-by-side bf16 run of
        # two networks costs minutes and proves nothing more about these steps.
        compared_dtype = "bf16" if not t.dry else "fp32"
        tiny = t.size("--input-size", "80")
        return [Step(f"train-{label}", proves, limit, 30,
                     convbench("train", *args, "--steps", steps, "--batch-size", batch, "--device", t.device,
                               "--out", str(dest / f"train-{label}"), *tiny))
                for label, proves, limit, args in (
                    ("googlenet", "GoogLeNet 5x5 vs two 3x3, trained side by side", 150,
                     ["--compare", "googlenet", "--dtype", compared_dtype, "--channels-last"]),
                    ("inception", "Inception v3 7x7 vs 1x7+7x1, trained side by side", 200,
                     ["--compare", "inception_v3", "--dtype", compared_dtype, "--channels-last"]),
                    ("compile", "a compiled training step", 150, ["--arch", "resnet18", "--compile"]))] + [
            Step("suite", "the CUDA latency suite's bodies once (pytest-benchmark, disabled: a smoke test)", 60, 20,
                 [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suites/test_latency.py", "-k",
                  "cuda" if not t.dry else "cpu and resnet18", "--benchmark-disable"])]
    raise SystemExit(f"unknown plan {name!r}; choose from {', '.join(PLANS)}")


SWEEPS = ("zoo-bf16-1", "zoo-bf16-2", "zoo-fp32-1", "zoo-fp32-2", "zoo-compile-1", "zoo-compile-2", "compare", "train")
PLANS = ("accept", *SWEEPS)


def steps_for(name: str, t: Target, dest: Path) -> list[Step]:
    return accept_steps(t, dest) if name == "accept" else sweep_steps(name, t, dest)


def share(step: Step, remaining: float, margin: float = TAR_MARGIN_S, slack: float = 1.0) -> float:
    """Seconds a step may run: its own limit (times the target's slack), within what is left of the budget after
    the margin; 0 (skip it) when that is less than its floor."""
    allowed = min(step.limit * slack, remaining - margin)
    return allowed if allowed >= step.floor * slack else 0.0


LOG_TAIL = 25  # lines of a step's log shown when it did not pass: what failed, without opening the archive


def log_tail(log: Path, lines: int = LOG_TAIL) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _sigint_default() -> None:
    """In the step's process before exec: a plan started in the background by a shell without job control has SIGINT
    ignored, and an ignored signal stays ignored across exec, so the step would never hear the SIGINT that lets its
    writers finish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_step(step: Step, seconds: float, log: Path, env: dict[str, str]) -> tuple[int, bool]:
    """The step's command for at most `seconds`; then SIGINT (its writers finish), then its group is killed.
    Returns (exit code, whether it was cut short)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(step.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True,
                                preexec_fn=_sigint_default)
        try:
            return proc.wait(timeout=seconds), False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout=GRACE_S), True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(), True


def clear_own_output(step: Step, dest: Path) -> Path | None:
    """A call re-run after a failed or cut one: the step's own --out (always inside the plan's folder) is replaced,
    not refused as a folder that already holds a run. Returns what was removed."""
    if "--out" not in step.argv:
        return None
    out = Path(step.argv[step.argv.index("--out") + 1]).resolve()
    if not out.is_relative_to(dest.resolve()) or out == dest.resolve() or not out.exists():
        return None
    shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


def snapshot(dest: Path, tarball: Path | None) -> None:
    if tarball is None:
        return
    partial = tarball.with_suffix(".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(dest, arcname=str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else dest.name)
    partial.replace(tarball)  # a call cut short mid-write still returns the previous whole tarball


@dataclass
class PlanRun:
    plan: str
    target: str
    budget_s: float
    started: float
    steps: list[Step] = field(default_factory=list)

    def write(self, dest: Path) -> None:
        (dest / "steps.json").write_text(json.dumps({**{k: v for k, v in asdict(self).items() if k != "steps"},
                                                     "steps": [asdict(s) for s in self.steps]}, indent=1))


def run_plan(name: str, steps: list[Step], dest: Path, budget: float, started: float, tarball: Path | None,
             target: str, clock: Callable[[], float] = time.time,
             runner: Callable[[Step, float, Path, dict[str, str]], tuple[int, bool]] = run_step,
             slack: float = 1.0) -> PlanRun:
    (dest / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    record = PlanRun(name, target, budget, started, steps)
    for step in steps:
        remaining = budget - (clock() - started)
        step.share = share(step, remaining, slack=slack)
        if not step.share:
            step.outcome = f"skipped: {remaining:.0f} s left of the budget, it needs {step.floor * slack:.0f} s"
        else:
            print(f"== {step.name} (at most {step.share:.0f} s): {step.proves}", flush=True)
            replaced = clear_own_output(step, dest)
            if replaced:
                print(f"{step.name}: replacing {replaced}, an earlier call's", flush=True)
            t0 = clock()
            step.rc, cut = runner(step, step.share, dest / "logs" / f"{step.name}.log", env)
            step.seconds = clock() - t0
            step.outcome = ("cut short at its share (SIGINT)" if cut else
                            "passed" if step.rc == 0 else f"failed (exit {step.rc})")
        print(f"{step.name}: {step.outcome}" + (f" after {step.seconds:.0f} s" if step.seconds else ""), flush=True)
        if step.rc is not None and step.outcome != "passed":
            for line in log_tail(dest / "logs" / f"{step.name}.log"):
                print(f"  | {line}", flush=True)
        record.write(dest)
        snapshot(dest, tarball)
    return record


def gpu_name() -> str:
    import torch
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def cpu_label() -> str:
    sys.path.insert(0, str(ROOT))
    from convbench.results.environment import cpu_name
    return "cpu-" + re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-")[:40]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="*", default=["accept"], help=f"{', '.join(PLANS)}, or all (dry run only)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes, every CUDA-only part swapped")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for one call (default {BUDGET_S:.0f})")
    parser.add_argument("--dest", type=Path, default=None, help="results folder")
    parser.add_argument("--list", action="store_true", help="print the plans and exit")
    args = parser.parse_args(argv)
    names = list(PLANS) if args.plans == ["all"] else args.plans
    unknown = [n for n in names if n not in PLANS]
    if unknown:
        print(f"unknown plan {', '.join(unknown)}; choose from {', '.join(PLANS)} or all", file=sys.stderr)
        return 2
    if len(names) > 1 and not (args.dry_run or args.list):
        print("a GPU call runs one plan: each plan fits one call of at most 9 minutes", file=sys.stderr)
        return 2
    target = Target(args.dry_run)
    if args.list:
        for name in names:
            steps = steps_for(name, target, Path("DEST"))
            print(f"{name}: {len(steps)} step(s), limits {sum(s.limit for s in steps):.0f} s in all, budget {args.budget:.0f} s")
            for s in steps:
                print(f"  {s.name:<22} at most {s.limit:>4.0f} s (needs {s.floor:>3.0f}): {s.proves}")
        return 0
    if not target.dry:
        import torch
        if not torch.cuda.is_available():
            print("no CUDA device: the GPU plans need a GPU (the CPU dry run is --dry-run)", file=sys.stderr)
            return 2
    dest = (args.dest or (ROOT / "results" / gpu_name() if not target.dry else ROOT / "runs" / "gpu-dry-run" / cpu_label())).resolve()
    tarball = Path(os.environ["OUT"]) / "results.tgz" if os.environ.get("OUT") else None
    # The call's clock starts where the shell wrapper started (wheels installed in it count against the budget).
    started = float(os.environ.get("CONVBENCH_PLAN_STARTED") or time.time())
    failed = 0
    for name in names:
        record = run_plan(name, steps_for(name, target, dest), dest, args.budget * target.slack, started, tarball,
                          "dry run on the CPU" if target.dry else "cuda", slack=target.slack)
        (dest / f"steps-{name}.json").write_text((dest / "steps.json").read_text())
        passed = sum(1 for s in record.steps if s.outcome == "passed")
        failed += len(record.steps) - passed
        print(f"{name}: {passed} of {len(record.steps)} steps passed in {time.time() - started:.0f} s of a "
              f"{args.budget * target.slack:.0f} s budget -> {dest}", flush=True)
        started = time.time()  # a dry run of several plans gives each plan a budget of its own, as one call each
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

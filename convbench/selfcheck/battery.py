"""The checks. Each returns one Check: name, status (pass / warn / fail / skip), the figure it measured, the
tolerance it held the figure to, and a note (why it warned or skipped, or what to fix).

Every measuring step takes what it measures with through the Context (the timer, the sweep, the counters), so
that the unit tests can make each check fail on purpose: a timer that reads twice the time, a sweep that keeps
its model, a count that is off by one."""
from __future__ import annotations

import gc
import math
import shutil
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from convbench import interrupts
from convbench.errors import UserError, error_text
from convbench.measure import clock, complexity, memory
from convbench.measure.ceiling import obtain
from convbench.measure.device import autocast, validate_device
from convbench.results.environment import environment
from convbench.run.config import ProfileConfig, TrainConfig
from convbench.run.data import Dataset
from convbench.run.modes import CUDA_ONLY, MODES, prepare
from convbench.run.profile import run_profile
from convbench.run.training import TrainingRun, train_side
from convbench.selfcheck import machine as probes
from convbench.selfcheck.fixtures import Sleeps
from convbench.zoo.registry import create_model
from convbench.zoo.specs import resolve_models

if TYPE_CHECKING:
    import pandas as pd



@dataclass
class Check:
    name: str
    status: str
    figure: str = ""
    tolerance: str = ""
    note: str = ""


def _default_sweep(ctx: "Context") -> None:
    run_profile(ProfileConfig(arch="resnet18,googlenet,alexnet", device=str(ctx.device), batch_sizes=(2,), input_size=64,
                              iters=2, warmup=1, cpu_memory=False, isolate=False))


def _default_counts(ctx: "Context") -> dict[str, int]:
    """MACs of resnet18 by every counter at hand (fvcore only where it is installed: a GPU image may lack it),
    and saved bytes on the meta device against the real device."""
    import importlib.util
    spec = resolve_models("resnet18", 64 if ctx.quick else None)[0]
    shape = spec.batch_shape(1)
    real = memory.count_saved_bytes(complexity.materialize(spec.build("meta"), ctx.device),
                                    torch.zeros(2, *shape[1:], device=ctx.device))
    counts = {"dispatch_macs": complexity.dispatch_counts(spec.build("meta"), shape)["macs"],
              "flop_counter_macs": complexity.flop_counter_macs(spec.build("meta"), shape),
              "saved_meta": memory.count_saved_bytes(spec.build("meta"), torch.zeros(2, *shape[1:], device="meta"))["saved_bytes"],
              "saved_device": real["saved_bytes"]}
    if importlib.util.find_spec("fvcore") is not None:
        counts["fvcore_macs"] = complexity.fvcore_counts(complexity.materialize(spec.build("meta")), shape)["macs"]
    return counts


@dataclass
class Context:
    device: torch.device
    quick: bool = False
    timer: Callable[..., list[float]] = clock.samples
    sweep: Callable[["Context"], Any] = _default_sweep
    counts: Callable[["Context"], dict[str, int]] = _default_counts
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def synchronize(self) -> None:
        clock.synchronize(self.device)


def machine(ctx: Context) -> Check:
    facts, warnings = probes.cpu_findings()
    if ctx.cuda:
        gpu_facts, gpu_warnings = probes.gpu_findings(ctx.device)
        facts.update(gpu_facts)
        warnings += gpu_warnings
    ctx.facts.update(facts)
    shown = ("gpu", "cuda", "cudnn", "driver_version", "clocks.sm", "clocks.max.sm") if ctx.cuda else \
        ("cpu", "cores", "torch_threads", "governor", "turbo", "load_1min", "others_cpu_share")
    figure = ", ".join(f"{k} {facts[k]}" for k in shown if k in facts)
    return Check("machine", "warn" if warnings else "pass", figure, "nothing that moves clocks or steals time",
                 "; ".join(warnings))


def _fidelity_workload(ctx: Context) -> tuple[Callable[[], Any], str]:
    torch.manual_seed(0)
    if ctx.cuda:  # a batch that keeps the GPU busy, where launch overhead cannot decide the ratio
        model = create_model("resnet50").to(ctx.device).eval().to(memory_format=torch.channels_last)
        x = torch.randn(64, 3, 224, 224, device=ctx.device).contiguous(memory_format=torch.channels_last)
        dtype, what = torch.bfloat16, "resnet50 b64 bf16 channels_last"
    else:
        model, x, dtype, what = create_model("resnet18").eval(), torch.randn(1, 3, 112, 112), None, "resnet18 b1 112px fp32"

    def forward() -> None:
        with torch.inference_mode(), autocast(ctx.device.type, dtype):
            model(x)
    return forward, what


# CPU, measured on the 2-core CI machine (AMD EPYC): ten runs gave 0.959-1.051 (full) and 0.991-1.018 (--quick);
# with two long rounds instead of many short ones, --quick read 0.87-1.26, as the machine's speed drifts between
# rounds: hence many short interleaved rounds, and a tolerance twice the largest deviation seen.
# GPU: 1.00 +- 0.03 at a batch that keeps the GPU busy.
FIDELITY_TOLERANCE = {"cpu": 0.10, "cuda": 0.03}


def timer_fidelity(ctx: Context) -> Check:
    """convbench's protocol against torch.utils.benchmark's blocked_autorange, interleaved, same forward."""
    forward, what = _fidelity_workload(ctx)
    rounds, seconds = (8, 0.1) if ctx.quick else (10, 0.4)
    ratio, ours, theirs = fidelity(forward, ctx.device, rounds, seconds, ctx.timer)
    tol = FIDELITY_TOLERANCE["cuda" if ctx.cuda else "cpu"]
    ok = abs(ratio - 1) <= tol
    return Check("timer_fidelity", "pass" if ok else "fail",
                 f"{ratio:.3f} (convbench p50 {ours:.3f} ms, blocked_autorange {theirs:.3f} ms; {what})", f"1.00 +- {tol:.2f}")


def fidelity(forward: Callable[[], Any], device: torch.device, rounds: int, seconds: float,
             timer: Callable[..., list[float]] = clock.samples) -> tuple[float, float, float]:
    """convbench's timing protocol and torch.utils.benchmark's blocked_autorange on the same forward, in
    alternating short rounds (the machine's speed drifts between rounds, and both sides see each drift).
    Returns (ratio of medians, convbench ms, blocked_autorange ms)."""
    from torch.utils.benchmark import Timer
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(statistics.median(timer(forward, device, 3, None, seconds)))
        reference = Timer("forward()", globals={"forward": forward}, num_threads=torch.get_num_threads())  # its default is 1
        theirs.append(reference.blocked_autorange(min_run_time=seconds).median * 1e3)
    return statistics.median(ours) / statistics.median(theirs), statistics.median(ours), statistics.median(theirs)


def _cuda_spin_ms(ctx: Context, cycles: int) -> float:
    """Event-timed duration of a kernel that spins `cycles` GPU clock cycles (torch.cuda._sleep, as PyTorch's own
    stream and event tests use)."""
    return clock.time_ms(lambda: torch.cuda._sleep(cycles), ctx.device)


def timer_truth(ctx: Context) -> Check:
    """A workload of known duration must be measured as that duration."""
    if not ctx.cuda:
        expected = 0.010 if ctx.quick else 0.020
        model, x = Sleeps(expected), torch.zeros(1)
        samples = ctx.timer(lambda: model(x), ctx.device, 1, 10 if ctx.quick else 20, 0.1)
        ratio = statistics.median(samples) / (expected * 1e3)
        ok = 0.99 <= ratio <= 1.05  # sleep never returns early; the scheduler may add a little
        return Check("timer_truth", "pass" if ok else "fail", f"{ratio:.3f} ({statistics.median(samples):.2f} ms for a "
                     f"{expected * 1e3:.0f} ms sleep)", "0.99-1.05 of the known duration")
    # The convbench CUDA timer (events around each call) on a spinning kernel: linear in the spin, and equal to the
    # host's synchronised wall time, neither of which holds if it saw launch time instead of device time.
    _cuda_spin_ms(ctx, 1000)
    cycles = 1_000_000
    while _cuda_spin_ms(ctx, cycles) < 2.0 and cycles < 10**10:
        cycles *= 2
    one = statistics.median(ctx.timer(lambda: torch.cuda._sleep(cycles), ctx.device, 1, 5, 0.1))
    four = statistics.median(ctx.timer(lambda: torch.cuda._sleep(4 * cycles), ctx.device, 1, 5, 0.1))
    wall = clock.wall_ms(lambda: torch.cuda._sleep(4 * cycles), ctx.device)
    linear, host = four / one, four / wall
    ok = abs(linear - 4) <= 0.2 and abs(host - 1) <= 0.05
    return Check("timer_truth", "pass" if ok else "fail",
                 f"4x spin reads {linear:.2f}x; timer / synchronised wall time {host:.3f} ({four:.2f} vs {wall:.2f} ms)",
                 "4.00 +- 0.20; 1.00 +- 0.05")


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def nothing_held(ctx: Context) -> Check:
    """A sweep of three models leaves the device where it started."""
    ctx.sweep(ctx)  # warm: lazy state of torch and the count cache are not a leak
    ctx.synchronize()
    tensors, allocated = _live_tensors(), torch.cuda.memory_allocated(ctx.device) if ctx.cuda else 0
    ctx.sweep(ctx)
    ctx.synchronize()
    tensors_after = _live_tensors()
    allocated_after = torch.cuda.memory_allocated(ctx.device) if ctx.cuda else 0
    ok = tensors_after == tensors and allocated_after == allocated
    figure = f"{tensors_after - tensors:+d} live tensors"
    if ctx.cuda:
        figure += f", {allocated_after - allocated:+,} bytes allocated on the GPU"
    return Check("nothing_held", "pass" if ok else "fail", figure + " after a sweep of resnet18, googlenet, alexnet",
                 "+0 exactly")


def counts_agree(ctx: Context) -> Check:
    c = ctx.counts(ctx)
    macs = {name: c[key] for name, key in (("dispatch", "dispatch_macs"), ("FlopCounterMode/2", "flop_counter_macs"),
                                           ("fvcore", "fvcore_macs")) if key in c}
    ok = len(set(macs.values())) == 1 and c["saved_meta"] == c["saved_device"]
    return Check("counts_agree", "pass" if ok else "fail",
                 "resnet18 MACs: " + ", ".join(f"{name} {v:,}" for name, v in macs.items()) +
                 f"; saved bytes b2: meta {c['saved_meta']:,}, {ctx.device.type} {c['saved_device']:,}", "equal exactly",
                 "" if "fvcore_macs" in c else "fvcore is not installed: its count was left out")


def _modes(ctx: Context) -> list[str]:
    """Every mode of this device; --quick leaves out the compiled ones (a minute or more of compilation each)."""
    return [m for m in MODES if (ctx.cuda or m not in CUDA_ONLY) and not (ctx.quick and "compile" in m)]


def modes(ctx: Context) -> Check:
    """Every mode this device supports runs, and its output matches eager's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).to(ctx.device).eval()
    x = torch.randn(2, 3, 32, 32, device=ctx.device)
    with torch.inference_mode():
        reference = model(x).float()
    results, failures, timings = [], [], {}
    for mode in _modes(ctx):
        try:
            forward = prepare(model, x, mode, ctx.device)
            with torch.inference_mode():
                out = forward().float()
            err = (out - reference).abs().max().item() / max(reference.abs().max().item(), 1e-12)
            results.append(f"{mode} {err:.1e}")
            if err > 1e-3:
                failures.append(f"{mode} differs from eager by {err:.1e}")
            if ctx.cuda:
                timings[mode] = statistics.median(ctx.timer(forward, ctx.device, 5, 50, 0.1))
        except Exception as exc:
            failures.append(f"{mode}: {error_text(exc, 160)}")
    if ctx.cuda and "graphs" in timings and timings["graphs"] >= timings["eager"]:
        failures.append(f"graphs ({timings['graphs']:.3f} ms) not faster than eager ({timings['eager']:.3f} ms) at batch 2")
    figure = "max relative difference from eager: " + ", ".join(results)
    if timings:
        figure += "; p50 ms " + ", ".join(f"{m} {t:.3f}" for m, t in timings.items())
    return Check("modes", "fail" if failures else "pass", figure,
                 "1e-3 of the output's scale; on a GPU graphs faster than eager", "; ".join(failures))


def isolation(ctx: Context) -> Check:
    """A model that kills its own process becomes an error row, the model after it is measured, and the child's
    rows record the settings the child applied (cuDNN autotuning off here, the opposite of the default) and the
    child's own process id."""
    import os
    rows = run_profile(ProfileConfig(arch="convbench.selfcheck.fixtures:killer,convbench.selfcheck.fixtures:tiny",
                                     device=str(ctx.device), batch_sizes=(1, 2), input_size=16, iters=2, warmup=0,
                                     cpu_memory=False, isolate=True, timeout=120, cudnn_benchmark=False)).rows
    got = {(r["model"].rsplit(":", 1)[1], r["batch_size"]): r for r in rows}
    died = got.get(("killer", 2), {})
    after = [got.get(("tiny", b), {}) for b in (1, 2)]
    timed = sum(1 for r in after if isinstance(r.get("latency_ms_p50"), float) and r["latency_ms_p50"] > 0)
    in_child = all(r.get("pid") not in (None, os.getpid()) and r.get("cudnn_benchmark") is False for r in after)
    ok = died.get("status") == "error" and "SIGKILL" in str(died.get("error")) and timed == 2 and in_child
    return Check("isolation", "pass" if ok else "fail",
                 f"killer b2: {died.get('status')} ({died.get('error')}); next model timed at {timed} of 2 batch sizes, "
                 f"in a child {'that recorded the settings it applied' if in_child else 'whose rows do not show its own settings'}",
                 "error row, then every row measured under the child's own settings")


def training(ctx: Context) -> Check:
    """A few steps on a fixed batch: finite losses that go down, in every dtype the device trains in."""
    dtypes = ["fp32", "bf16"] + (["fp16"] if ctx.cuda else [])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=gen)
    y = torch.arange(16) % 4
    data = Dataset("fixed batch", x, y, x, y, 4)
    side = TrainingRun("selfcheck", "tiny", "custom", (3, 32, 32), lambda n: nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, n)))
    figures, failures = [], []
    for dtype in dtypes:
        losses: list[float] = []
        config = TrainConfig(arch="resnet18", steps=6, batch_size=16, device=str(ctx.device), dtype=dtype, lr=0.05,
                             log_every=1, warmup_steps=0)
        train_side(side, config, data, lambda row: losses.append(row["loss"]))
        figures.append(f"{dtype} {losses[0]:.3f}->{losses[-1]:.3f}")
        if not all(math.isfinite(v) for v in losses) or not losses[-1] < losses[0]:
            failures.append(f"{dtype} losses {', '.join(f'{v:.3f}' for v in losses)}")
    return Check("training", "fail" if failures else "pass", "loss first->last: " + ", ".join(figures),
                 "finite and decreasing over 6 steps" + (" (fp16 with its gradient scaler)" if ctx.cuda else ""),
                 "; ".join(failures))


def within_peak(ctx: Context) -> Check:
    """No timed row of a small sweep above 100% of this machine's measured ceiling: a count or a ceiling that is
    wrong shows here first."""
    peak, _ = obtain(str(ctx.device), ("fp32",))
    rows = run_profile(ProfileConfig(arch="resnet18,googlenet,alexnet", device=str(ctx.device), batch_sizes=(2,), input_size=64,
                                     iters=3, warmup=1, cpu_memory=False, isolate=False)).rows
    shares = {r["model"]: r.get("pct_peak") for r in rows}
    over = [f"{m} {v:.0%}" for m, v in shares.items() if v is not None and v > 1.0]
    missing = [m for m, v in shares.items() if v is None]
    figure = (f"fp32 peak {peak.compute['fp32'].value:.3g} TFLOP/s ({peak.compute['fp32'].kernel}); rows at "
              + ", ".join(f"{m} {v:.0%}" for m, v in shares.items() if v is not None))
    return Check("within_peak", "fail" if over or missing else "pass", figure, "every row at or under 100% of the measured peak",
                 "; ".join(filter(None, [f"above the peak: {', '.join(over)}" if over else "",
                                         f"no share of peak: {', '.join(missing)}" if missing else ""])))


def shared_devices(entries: list[tuple[str, int, str | None]]) -> list[str]:
    """(host, rank, device identity) of every rank -> one line per device that two ranks of a host share."""
    seen: dict[tuple[str, str], int] = {}
    clashes = []
    for host, rank, device in entries:
        if device is None:
            continue
        if (host, device) in seen:
            clashes.append(f"ranks {seen[(host, device)]} and {rank} on {host} share {device}")
        else:
            seen[(host, device)] = rank
    return clashes


def ranks(ctx: Context) -> Check:
    """Under torchrun on a node with several GPUs, each rank drives its own GPU (one forgotten LOCAL_RANK puts
    every rank on GPU 0, and each then measures an eighth of a GPU)."""
    import os
    import platform
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return Check("ranks", "skip", note="one process: run torchrun --nproc-per-node N -m convbench selfcheck "
                                           "--device cuda --check ranks on the node")
    if not ctx.cuda:
        return Check("ranks", "skip", f"{world} ranks", note="ranks on the CPU share it by design")
    import torch.distributed as dist
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    try:
        entries: list = [None] * dist.get_world_size()
        identity = str(getattr(torch.cuda.get_device_properties(ctx.device), "uuid", torch.cuda.get_device_name(ctx.device)))
        dist.all_gather_object(entries, (platform.node(), dist.get_rank(), f"{ctx.device} ({identity})"))
    finally:
        if created:
            dist.destroy_process_group()
    clashes = shared_devices([(h, r, d.split(" (", 1)[1]) for h, r, d in entries])
    hosts = len({h for h, _, _ in entries})
    return Check("ranks", "fail" if clashes else "pass", f"{world} ranks on {hosts} host{'s' if hosts != 1 else ''}: "
                 + ", ".join(f"rank {r} {d}" for _, r, d in entries), "a GPU of its own for every rank of a host",
                 "; ".join(clashes))


def _count_small_forward() -> int:
    from convbench.gate.counted import count_instructions
    return count_instructions("convbench.selfcheck.fixtures:tiny", 1, (3, 32, 32))


def instructions_repeat(ctx: Context, count: Callable[[], int] = _count_small_forward) -> Check:
    """One small forward counted twice by callgrind, at once: the instruction gate stands on equal figures."""
    if shutil.which("valgrind") is None:
        return Check("instructions_repeat", "skip", note="valgrind is not installed (apt-get install valgrind): the "
                                                         "instruction gate cannot run here")
    from concurrent.futures import ThreadPoolExecutor
    from convbench.measure.instructions import CountFailed
    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = (f.result() for f in [pool.submit(count), pool.submit(count)])
    except CountFailed as exc:
        return Check("instructions_repeat", "fail", note=str(exc))
    return Check("instructions_repeat", "pass" if first == second else "fail",
                 f"{first:,} and {second:,} instructions per call", "equal, exactly")


CHECKS: dict[str, Callable[[Context], Check]] = {
    "machine": machine, "timer_fidelity": timer_fidelity, "timer_truth": timer_truth, "nothing_held": nothing_held,
    "counts_agree": counts_agree, "modes": modes, "isolation": isolation, "training": training,
    "within_peak": within_peak, "ranks": ranks, "instructions_repeat": instructions_repeat,
}
# Checks that hold a timing to a tolerance: a failure is measured once more, and stands only when the second
# measurement fails too. A timer that is wrong fails both; a burst of other work on a shared runner seldom spans
# both. The first figure stays in the note.
TIMED = ("timer_fidelity", "timer_truth", "within_peak")
# On CUDA --quick keeps eager and graphs; counting under the simulator takes most of a minute on any device.
QUICK_SKIPS = {"cpu": {"modes": "torch.compile on the CPU takes longer than --quick allows",
                       "instructions_repeat": "two processes under valgrind take longer than --quick allows"},
               "cuda": {"instructions_repeat": "two processes under valgrind take longer than --quick allows"}}


@dataclass
class SelfcheckResult:
    checks: list[Check]
    env: dict[str, Any]
    seconds: float
    interrupted: int = 0  # the signal that ended the battery early (2 for Ctrl-C); its finished checks are kept

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame([c.__dict__ for c in self.checks], columns=["name", "status", "figure", "tolerance", "note"])

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def validate(device: str, only: list[str] | None) -> None:
    validate_device(device)
    unknown = [n for n in (only or []) if n not in CHECKS]
    if unknown:
        raise UserError(f"unknown check {', '.join(unknown)}; choose from {', '.join(CHECKS)}")


def _attempt(name: str, check: Callable[[Context], Check], ctx: Context) -> Check:
    try:
        return check(ctx)
    except Exception as exc:  # a check that raises is a failure of that check, not of the battery
        return Check(name, "fail", note=error_text(exc))


def run_selfcheck(device: str = "cpu", quick: bool = False, only: list[str] | None = None, context: Context | None = None,
                  on_check: Callable[[Check], None] | None = None) -> SelfcheckResult:
    """The battery as a library call; `.frame` is one row per check."""
    validate(device, only)
    ctx = context or Context(torch.device(device), quick)
    started = clock.now()
    results: list[Check] = []
    stopped = 0
    try:
        for name, check in CHECKS.items():
            if only and name not in only:
                continue
            why = QUICK_SKIPS.get(ctx.device.type, {}).get(name) if ctx.quick else None
            if why:
                result = Check(name, "skip", note=why)
            else:
                result = _attempt(name, check, ctx)
                if interrupts.received():  # a sweep inside the check kept its rows and returned: its figure is cut
                    raise KeyboardInterrupt
                if result.status == "fail" and result.figure and name in TIMED:  # measured, not raised
                    first = result
                    result = _attempt(name, check, ctx)
                    result.note = "; ".join(filter(None, [result.note, f"measured twice, first fail: {first.figure}"]))
            results.append(result)
            if on_check:
                on_check(result)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: the finished checks are the result
        stopped = interrupts.received() or getattr(exc, "signal_number", 2)
    env = {**environment(device), "machine_findings": ctx.facts}
    return SelfcheckResult(results, env, clock.now() - started, stopped)

"""How close to the machine's limit: measured ceilings, a share of peak for every timed row, and the bound that
applies at a row's arithmetic intensity.

A ceiling is measured, not read off a datasheet (a CPU has none that convbench could trust): peak compute per
dtype is the best of a few large GEMMs and 3x3 convolutions (NCHW and channels_last), and the kernel that set it
is named, because no single kernel is the peak everywhere (on the 2-core CI machine a channels_last convolution
beat MKL's GEMM by 2.4x, and resnet18 would have read 120% of a GEMM-only "peak"). Memory bandwidth is the best of
a device copy (bytes read + written) and a read-only reduction. On a known GPU the datasheet's dense peak is shown
beside the measured one.

Ceilings are cached per machine under the count cache's folder, keyed by what changes them: the CPU model and the
cores and threads in use, or the GPU's name and maximum clock, the torch build, the TF32 setting. A file that
cannot be read, or was written for another key or format, is measured again, never trusted."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from convbench import files
from convbench.errors import DiskFull, UserError
from convbench.measure import cache, clock, host_load
from convbench.measure.host_load import BUSY_SHARE
from convbench.measure.device import DTYPES, validate_device
from convbench.measure.host import cpu_name, now
from convbench.files import write_atomically

FORMAT = 1
# Dense peak TFLOP/s and memory bandwidth by GPU name fragment (vendor datasheets, SXM parts): shown beside the
# measured ceiling, never used in its place.
DATASHEET = {
    "H100": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0, "gbps": 3350.0},
    "H200": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0, "gbps": 4800.0},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0, "gbps": 2039.0},
}


@dataclass
class Peak:
    value: float                 # TFLOP/s, or GB/s for bandwidth
    kernel: str                  # the kernel that set it
    candidates: dict[str, float] = field(default_factory=dict)


@dataclass
class Ceiling:
    key: str
    machine: dict[str, Any]
    compute: dict[str, Peak]     # by dtype
    bandwidth: Peak
    datasheet: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    measured: str = ""           # when, UTC
    host_busy: float | None = None  # the share of the CPU other processes used meanwhile (convbench.measure.host_load)

    def tflops(self, dtype: str) -> float | None:
        peak = self.compute.get(dtype)
        return peak.value if peak else None

    @property
    def busy(self) -> bool:
        return self.host_busy is not None and self.host_busy > BUSY_SHARE

    def describe(self, dtype: str) -> str:
        """Where a share of peak comes from, for a row's context: the figure, the kernel, when, and the load."""
        peak = self.compute.get(dtype)
        if peak is None:
            return ""
        load = f", host busy {self.host_busy:.0%}" if self.host_busy is not None else ""
        return f"{peak.value:.4g} TFLOP/s {dtype} ({peak.kernel}), measured {self.measured or 'at an unknown time'}{load}"

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ceiling":
        """A ceiling from JSON, checked: the format, every figure a positive number within what any device could
        do, the kernels named. A cache file that fails is measured again, never trusted."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else type(data).__name__!r}, not {FORMAT}")
        compute = data["compute"]
        if not isinstance(compute, dict) or not isinstance(data["machine"], dict):
            raise ValueError("not a ceiling")
        ceiling = cls(str(data["key"]), data["machine"], {str(d): _peak(p, "TFLOP/s", PLAUSIBLE_TFLOPS) for d, p in compute.items()},
                      _peak(data["bandwidth"], "GB/s", PLAUSIBLE_GBPS), dict(data.get("datasheet") or {}),
                      float(data.get("seconds") or 0.0), str(data.get("measured") or ""), data.get("host_busy"))
        for dtype, limit in ceiling.datasheet.items():  # a GPU cannot beat its own datasheet by half again
            peak = ceiling.bandwidth.value if dtype == "gbps" else ceiling.tflops(dtype)
            if peak is not None and peak > 1.5 * limit:
                raise ValueError(f"{dtype} {peak:g} is above 1.5x the datasheet's {limit:g}")
        return ceiling


# What no device convbench can run on could reach, and what any can: a figure outside is a broken file.
PLAUSIBLE_TFLOPS = (1e-6, 1e4)
PLAUSIBLE_GBPS = (1e-3, 1e5)


def _peak(data: Any, unit: str, plausible: tuple[float, float]) -> Peak:
    if not isinstance(data, dict):
        raise ValueError(f"a peak is {type(data).__name__}")
    value = data["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not plausible[0] <= value <= plausible[1]:
        raise ValueError(f"a peak of {value!r} {unit} is not one any device has")
    candidates = data.get("candidates") or {}
    if not isinstance(data["kernel"], str) or not isinstance(candidates, dict):
        raise ValueError("a peak names no kernel")
    return Peak(float(value), data["kernel"], {str(k): float(v) for k, v in candidates.items()})


# The kernels. Each grows along a ladder of sizes until one call takes PROBE_MS on its device (or the ladder ends):
# large enough to stand well above launch and call overhead, never so large that a slow path (bf16 on a CPU
# without bf16 units: 0.7 GFLOP/s) makes the whole set take minutes.
PROBE_MS = {"cpu": 100.0, "cuda": 5.0}
GEMM_SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (2048, 4096, 8192)}
# (batch, channels, height = width) of a 3x3 convolution, channels in = out.
CONV_SIZES = {"cpu": ((1, 64, 28), (1, 128, 28), (1, 256, 28), (1, 256, 56), (2, 256, 56), (4, 256, 56)),
              "cuda": ((16, 256, 56), (64, 256, 56))}
COPY_BYTES = {"cpu": 1 << 28, "cuda": 1 << 30}

Setup = Callable[[], Callable[[], Any]]
Timer = Callable[[Callable[[], Any], torch.device], float]


def one_call_ms(fn: Callable[[], Any], device: torch.device) -> float:
    fn()  # lazy initialisation and first-call costs stay out
    return clock.time_ms(fn, device)


def _grown(ladder: tuple, kernel: Callable[[Any], tuple[str, float, Setup]], device: torch.device,
           probe: Timer) -> tuple[str, float, Setup]:
    """The first rung of `ladder` whose call takes PROBE_MS, else its last."""
    for i, size in enumerate(ladder):
        name, work, setup = kernel(size)
        if i == len(ladder) - 1:
            return name, work, setup
        try:
            if probe(setup(), device) >= PROBE_MS[device.type]:
                return name, work, setup
        except RuntimeError:
            return name, work, setup  # best() says whether this kernel runs at all


def compute_kernels(device: torch.device, dtype: torch.dtype, probe: Timer = one_call_ms) -> dict[str, tuple[float, Setup]]:
    """name -> (FLOPs per call, a setup that returns the call), each at the size its ladder grew to."""
    kind = device.type

    def gemm(n: int) -> tuple[str, float, Setup]:
        def setup() -> Callable[[], Any]:
            x, y = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
            return lambda: torch.mm(x, y)
        return f"{n}x{n} GEMM", 2.0 * n ** 3, setup

    def conv(channels_last: bool) -> Callable[[tuple[int, int, int]], tuple[str, float, Setup]]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def at(size: tuple[int, int, int]) -> tuple[str, float, Setup]:
            b, c, hw = size

            def setup() -> Callable[[], Any]:
                x = torch.randn(b, c, hw, hw, device=device, dtype=dtype).contiguous(memory_format=fmt)
                w = torch.randn(c, c, 3, 3, device=device, dtype=dtype).contiguous(memory_format=fmt)
                return lambda: torch.nn.functional.conv2d(x, w, padding=1)
            layout = "channels_last" if channels_last else "NCHW"
            return f"3x3 conv {c}->{c} {hw}x{hw} b{b} {layout}", 2.0 * b * c * c * 9 * hw * hw, setup
        return at

    chosen = [_grown(GEMM_SIZES[kind], gemm, device, probe), _grown(CONV_SIZES[kind], conv(False), device, probe),
              _grown(CONV_SIZES[kind], conv(True), device, probe)]
    return {name: (work, setup) for name, work, setup in chosen}


def bandwidth_kernels(device: torch.device) -> dict[str, tuple[float, Callable[[], Callable[[], Any]]]]:
    """name -> (bytes moved per call, setup)."""
    size = COPY_BYTES[device.type]

    def copy() -> Callable[[], Any]:
        src, dst = torch.empty(size // 4, device=device), torch.empty(size // 4, device=device)
        src.fill_(1.0)
        return lambda: dst.copy_(src)

    def reduce() -> Callable[[], Any]:
        src = torch.ones(size // 4, device=device)
        return lambda: src.sum()
    return {f"copy {size >> 20} MiB": (2.0 * size, copy), f"sum of {size >> 20} MiB": (float(size), reduce)}


def median_ms(fn: Callable[[], Any], device: torch.device, min_time: float = 0.3) -> float:
    return statistics.median(clock.samples(fn, device, 2, None, min_time))


def best(kernels: dict[str, tuple[float, Callable[[], Callable[[], Any]]]], device: torch.device, timer: Timer,
         scale: float) -> Peak:
    """The best rate over the kernels (work / median time x scale), naming the kernel that set it; a kernel that
    fails (a dtype the device lacks for it) is left out."""
    rates: dict[str, float] = {}
    for name, (work, setup) in kernels.items():
        try:
            rates[name] = work / (timer(setup(), device) / 1e3) * scale
        except RuntimeError:
            continue
    if not rates:
        raise UserError(f"no kernel ran on {device}")
    top = max(rates, key=rates.get)
    return Peak(rates[top], top, rates)


def machine(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"torch": torch.__version__, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                             "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                     max_clock_mhz=_max_sm_clock(device))
    else:
        facts.update(cpu=cpu_name(), cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                     threads=torch.get_num_threads(), host=platform.node())
    return facts


@functools.lru_cache(maxsize=None)
def _max_sm_clock(device: torch.device) -> str:
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", "-i", str(device.index or 0), "--query-gpu=clocks.max.sm", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unknown"


def cache_key(facts: dict[str, Any]) -> str:
    """What the machine's ceilings depend on; the host's name is not part of it (two identical machines agree)."""
    keyed = {k: v for k, v in facts.items() if k != "host"}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    return cache.root() / "ceilings"


def datasheet(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    return next((dict(p) for fragment, p in DATASHEET.items() if fragment in name), {})


def measure(device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",), timer: Timer = median_ms) -> Ceiling:
    """The ceilings measured now, with the share of the CPU other processes used meanwhile: a busy machine slows the
    kernels, and a peak taken then would make every later share of it too high."""
    dev = torch.device(device)
    started, load = clock.now(), host_load.snapshot()
    facts = machine(dev)
    compute = {d: best(compute_kernels(dev, DTYPES[d]), dev, timer, 1e-12) for d in dtypes}
    bandwidth = best(bandwidth_kernels(dev), dev, timer, 1e-9)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return Ceiling(cache_key(facts), facts, compute, bandwidth, datasheet(dev), clock.now() - started, now(),
                   host_load.window_columns(load).get("host_busy"))


def load(key: str) -> tuple[Ceiling | None, str | None]:
    path = _cache_dir() / f"{key}.json"
    if not path.exists():
        return None, None
    try:
        ceiling = Ceiling.from_dict(files.load_json(path))
        if ceiling.key != key:
            raise ValueError(f"written for machine {ceiling.key}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        return None, f"the cached ceiling {path} could not be used ({' '.join(str(exc).split())[:120]}); measured again"
    return ceiling, None


def save(ceiling: Ceiling) -> Path | None:
    """Into this machine's cache; None where it cannot be written (the run goes on with the figure it measured)."""
    folder = _cache_dir()
    path = folder / f"{ceiling.key}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(ceiling.as_dict(), indent=1))
    except (OSError, DiskFull):
        return None
    return path


def validate(device: str, dtypes: tuple[str, ...]) -> None:
    validate_device(device)
    if not dtypes:
        raise UserError("--dtype names no dtype")
    for d in dtypes:
        if d not in DTYPES:
            raise UserError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
        if d == "fp16" and not device.startswith("cuda"):
            raise UserError("fp16 is for CUDA; on the CPU measure fp32 or bf16")


def obtain(device: str, dtypes: tuple[str, ...], refresh: bool = False, timer: Timer = median_ms,
           on_note: Callable[[str], None] | None = None) -> tuple[Ceiling, bool]:
    """This machine's ceilings for `dtypes` and whether they were measured now: from the cache, measuring what is
    missing (and everything with `refresh`). A ceiling measured while other processes kept the machine busy is
    used for this run and said so, but not cached: the next quiet run measures the peak again."""
    validate(device, dtypes)
    key = cache_key(machine(torch.device(device)))
    cached, note = (None, None) if refresh else load(key)
    if note and on_note:
        on_note(note)
    missing = tuple(d for d in dtypes if cached is None or d not in cached.compute)
    if cached is not None and not missing:
        return cached, False
    fresh = measure(device, missing if cached else dtypes, timer)
    if cached is not None:
        fresh.compute = {**cached.compute, **fresh.compute}
        fresh.host_busy = max(filter(lambda v: v is not None, (fresh.host_busy, cached.host_busy)), default=None)
    if fresh.busy:
        if on_note:
            on_note(f"the ceiling was measured while other processes used {fresh.host_busy:.0%} of the CPU: this run "
                    "uses it, marked busy, and it is not cached (a quiet run measures it again)")
        _busy[key] = fresh
    else:
        save(fresh)
        _busy.pop(key, None)
    _cached.cache_clear()
    return fresh, True


# Ceilings measured busy in this process: the run that measured one uses it, marked, and never caches it.
_busy: dict[str, Ceiling] = {}


@functools.lru_cache(maxsize=8)
def _cached(key: str) -> Ceiling | None:
    return load(key)[0]


def forget() -> None:
    """Drop what this process holds of ceilings (a new cache folder, a test)."""
    _cached.cache_clear()
    _busy.clear()


def cached(device: str) -> Ceiling | None:
    """The ceiling this machine has as it is set now (threads, TF32): cached, or measured busy by this process; None
    and a row has no share of peak."""
    key = cache_key(machine(torch.device(device)))
    return _cached(key) or _busy.get(key)

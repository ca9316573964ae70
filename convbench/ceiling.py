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
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from convbench.config import DTYPES, validate_device
from convbench.errors import UserError

FORMAT = 1
# Dense peak TFLOP/s and memory bandwidth by GPU name fragment (vendor datasheets, SXM parts): shown beside the
# measured ceiling, never used in its place.
DATASHEET = {
    "H100": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0, "gbps": 3350.0},
    "H200": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0, "gbps": 4800.0},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0, "gbps": 2039.0},
}
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


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

    def tflops(self, dtype: str) -> float | None:
        peak = self.compute.get(dtype)
        return peak.value if peak else None

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ceiling":
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {FORMAT}")
        return cls(data["key"], data["machine"], {d: Peak(**p) for d, p in data["compute"].items()},
                   Peak(**data["bandwidth"]), data.get("datasheet", {}), data.get("seconds", 0.0))


# The kernels. Sizes keep each well above launch and call overhead on its device, and the whole set under 30 s.

def _sizes(cuda: bool) -> dict[str, int]:
    return {"gemm": 8192, "conv_batch": 64, "bytes": 1 << 30} if cuda else {"gemm": 2048, "conv_batch": 4, "bytes": 1 << 28}


def compute_kernels(device: torch.device, dtype: torch.dtype) -> dict[str, tuple[float, Callable[[], Callable[[], Any]]]]:
    """name -> (FLOPs per call, a setup that returns the call)."""
    s = _sizes(device.type == "cuda")
    n, b = s["gemm"], s["conv_batch"]

    def gemm() -> Callable[[], Any]:
        x, y = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        return lambda: torch.mm(x, y)

    def conv(channels_last: bool) -> Callable[[], Callable[[], Any]]:
        def setup() -> Callable[[], Any]:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            x = torch.randn(b, 256, 56, 56, device=device, dtype=dtype).contiguous(memory_format=fmt)
            w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=fmt)
            return lambda: torch.nn.functional.conv2d(x, w, padding=1)
        return setup
    conv_flops = 2.0 * b * 256 * 256 * 9 * 56 * 56
    return {f"{n}x{n} GEMM": (2.0 * n ** 3, gemm),
            f"3x3 conv 256->256 56x56 b{b} NCHW": (conv_flops, conv(False)),
            f"3x3 conv 256->256 56x56 b{b} channels_last": (conv_flops, conv(True))}


def bandwidth_kernels(device: torch.device) -> dict[str, tuple[float, Callable[[], Callable[[], Any]]]]:
    """name -> (bytes moved per call, setup)."""
    size = _sizes(device.type == "cuda")["bytes"]

    def copy() -> Callable[[], Any]:
        src, dst = torch.empty(size // 4, device=device), torch.empty(size // 4, device=device)
        src.fill_(1.0)
        return lambda: dst.copy_(src)

    def reduce() -> Callable[[], Any]:
        src = torch.ones(size // 4, device=device)
        return lambda: src.sum()
    return {f"copy {size >> 20} MiB": (2.0 * size, copy), f"sum of {size >> 20} MiB": (float(size), reduce)}


Timer = Callable[[Callable[[], Any], torch.device], float]


def median_ms(fn: Callable[[], Any], device: torch.device, min_time: float = 0.3) -> float:
    import statistics
    from convbench.measure.timing import time_iterations
    return statistics.median(time_iterations(fn, device, 2, None, min_time))


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
    from convbench.settings import cpu_name
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
    from convbench.cache import root
    return root() / "ceilings"


def datasheet(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    return next((dict(p) for fragment, p in DATASHEET.items() if fragment in name), {})


def measure(device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",), timer: Timer = median_ms) -> Ceiling:
    import time
    dev = torch.device(device)
    started = time.perf_counter()
    facts = machine(dev)
    compute = {d: best(compute_kernels(dev, DTYPES[d]), dev, timer, 1e-12) for d in dtypes}
    bandwidth = best(bandwidth_kernels(dev), dev, timer, 1e-9)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return Ceiling(cache_key(facts), facts, compute, bandwidth, datasheet(dev), time.perf_counter() - started)


def load(key: str) -> tuple[Ceiling | None, str | None]:
    path = _cache_dir() / f"{key}.json"
    if not path.exists():
        return None, None
    try:
        ceiling = Ceiling.from_dict(json.loads(path.read_text()))
        if ceiling.key != key:
            raise ValueError(f"written for machine {ceiling.key}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"the cached ceiling {path} could not be used ({' '.join(str(exc).split())[:120]}); measured again"
    return ceiling, None


def save(ceiling: Ceiling) -> Path:
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ceiling.key}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ceiling.as_dict(), indent=1))
    tmp.replace(path)
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
    missing (and everything with `refresh`), and caching the result."""
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
    save(fresh)
    _cached.cache_clear()
    return fresh, True


def record(config: Any) -> dict[str, Any]:
    """The ceiling a run's rows are shares of, for its env.json: obtained (measured once per machine, cached) under
    the settings the run measures with, so that its key is theirs."""
    from convbench.settings import applied
    with applied(config):
        return obtain(config.device, (config.dtype,))[0].as_dict()


@functools.lru_cache(maxsize=8)
def _cached(key: str) -> Ceiling | None:
    return load(key)[0]


def cached(device: str) -> Ceiling | None:
    """The ceiling already cached for this machine as it is set now (threads, TF32), or None: a row then has no
    share of peak."""
    return _cached(cache_key(machine(torch.device(device))))


def intensity(macs: float, batch: int, param_bytes: float, acts: float, dtype: str) -> float:
    """Estimated FLOPs per byte of a forward: 2 x MACs x batch over the weights read once plus every conv/linear
    output written and read once. An estimate, not a measurement (the roofline says so too)."""
    moved = param_bytes + 2 * acts * batch * DTYPE_BYTES.get(dtype, 4)
    return 2 * macs * batch / moved if moved else float("nan")


def row_columns(achieved_tflops: float | None, flops_per_byte: float, dtype: str, ceiling: Ceiling | None) -> dict[str, Any]:
    """pct_peak (achieved / the measured peak of its dtype), the estimated intensity, and the bound at that
    intensity: memory where intensity x bandwidth is below the compute peak, else compute."""
    peak = ceiling.tflops(dtype) if ceiling else None
    if not peak or achieved_tflops is None or math.isnan(achieved_tflops):
        return {"intensity": flops_per_byte} if not math.isnan(flops_per_byte) else {}
    ridge = peak * 1e3 / ceiling.bandwidth.value  # FLOPs per byte where the two ceilings meet
    return {"intensity": flops_per_byte, "pct_peak": achieved_tflops / peak,
            "bound": "memory" if flops_per_byte < ridge else "compute"}

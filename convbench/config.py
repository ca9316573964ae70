"""Frozen run configurations: what the CLI parses into and the library runs from."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from convbench.errors import UserError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FORMATS = ("csv", "json", "md", "parquet")


def autocast(device_type: str, dtype: torch.dtype | None, cache_enabled: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device_type`; fp32 (or None) runs as written. CUDA-graph capture needs
    cache_enabled=False (PyTorch's CUDA-graphs notes)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)
METRICS = ("static", "all")


@dataclass(frozen=True)
class ProfileConfig:
    arch: str = "all"
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False              # shorthand for modes=("compile",)
    cudnn_benchmark: bool = True       # these three are applied by the process that measures (convbench.settings)
    tf32: bool | None = None           # None: PyTorch's defaults (fp32 matmuls, TF32 cuDNN convolutions)
    threads: int | None = None         # None: torch's default
    metrics: str = "all"
    modes: tuple[str, ...] | None = None  # eager, compile, graphs, compile+graphs (convbench.modes)
    warmup: int = 5
    iters: int | None = None
    min_time: float = 1.0
    input_size: int | None = None
    out: Path | None = None
    overwrite: bool = False            # replace the run already in `out` (convbench.outdirs)
    formats: tuple[str, ...] = ("csv",)
    by_layer: bool = False
    cpu_memory: bool = True
    counter: str = "dispatch"          # MACs and activations: dispatch (meta device, default) or fvcore
    isolate: bool | None = None        # None: on for CUDA, off for the CPU (README: the cost of isolation)
    timeout: float = 900.0             # seconds a row may take under isolation before its child is killed
    shard: tuple | None = None         # (index from 1, count, source): measure only this shard's models (convbench.shard)
    ceiling: bool = True               # measure (once per machine, cached) the ceiling rows report their share of

    def __post_init__(self) -> None:
        validate_run(self.device, self.batch_sizes, self.dtype, self.formats)
        if self.metrics not in METRICS:
            raise UserError(f"unknown metrics {self.metrics!r}; choose static or all")
        if self.warmup < 0:
            raise UserError("--warmup must be 0 or more")
        if self.iters is not None and self.iters < 1:
            raise UserError("--iters must be at least 1")
        if self.min_time <= 0:
            raise UserError("--min-time must be positive")
        if self.input_size is not None and self.input_size < 1:
            raise UserError("--input-size must be positive")
        if not self.timeout > 0:
            raise UserError("--timeout must be positive")
        validate_counter(self.counter)
        validate_threads(self.threads)
        from convbench.modes import validate_modes
        validate_modes(self.run_modes, self.device)

    @property
    def run_modes(self) -> tuple[str, ...]:
        return self.modes or (("compile",) if self.compile else ("eager",))

    @property
    def isolated(self) -> bool:
        return self.device.startswith("cuda") if self.isolate is None else self.isolate


def validate_run(device: str, batch_sizes: tuple[int, ...], dtype: str, formats: tuple[str, ...]) -> None:
    """The checks every measuring command shares."""
    validate_device(device)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise UserError(f"batch sizes must be positive integers, got {','.join(map(str, batch_sizes)) or 'none'}")
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "fp16" and device == "cpu":
        raise UserError("fp16 is for CUDA; on the CPU use bf16 or fp32")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")


def validate_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")


def validate_counter(counter: str) -> None:
    if counter not in ("dispatch", "fvcore"):
        raise UserError(f"unknown counter {counter!r}; choose dispatch or fvcore")


def validate_device(device: str) -> None:
    if device == "cpu":
        return
    if device.split(":")[0] != "cuda":
        raise UserError(f"unknown device {device!r}; choose cpu or cuda")
    if not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device here (torch "
                        f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)")


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    parts = [v.strip() for v in text.split(",")]
    try:
        if not text.strip() or any(not v for v in parts):
            raise ValueError
        return tuple(int(v) for v in parts)
    except ValueError:
        raise UserError(f"{what} must be integers separated by commas, got {text!r}") from None


def parse_percent(text: str, what: str) -> float:
    """'25%' or '0.25' -> 0.25."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"{what} must be a percentage such as 25%, got {text!r}") from None
    if not value > 0:
        raise UserError(f"{what} must be above 0%, got {text!r}")
    return value


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


Config = TypeVar("Config")


def to_payload(config: Any) -> dict[str, Any]:
    """A frozen config as JSON-ready fields, for a child process."""
    return {f.name: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(config) for v in [getattr(config, f.name)]}


def from_payload(cls: type[Config], data: dict[str, Any], **changes: Any) -> Config:
    """The inverse of to_payload: lists back to tuples, `out` back to a Path."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    if values.get("out") is not None:
        values["out"] = Path(values["out"])
    return cls(**{**values, **changes})

"""Frozen run configurations: what the CLI parses into and the library runs from, checked when made, and the one
way a config becomes JSON (env.json, a child's payload, a DDP rank's request) and comes back with its types.

Every sweep shares `SweepConfig`'s fields (device, dtype, the backend settings the measuring process applies,
where it writes, isolation, shards); profile, compare and train add what they measure."""
from __future__ import annotations

import contextvars
import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from convbench.errors import UserError
from convbench.lists import parse_list  # noqa: F401  (the options' lists, for the commands)
from convbench.measure.device import DTYPES, validate_device
from convbench.measure import instructions
from convbench.measure.paired import MIN_PAIRS
from convbench.results.schema import FORMATS
from convbench.run import modes
from convbench.zoo.comparisons import COMPARISONS, TRAIN_PAIRS

METRICS = ("static", "all", "instructions")
COUNTERS = ("dispatch", "fvcore")
# Beyond these a number is a typo or an attack, not a run: each would take longer than any sweep is worth.
MAX_WARMUP = 100_000
MAX_ITERS = 10_000_000
MAX_SECONDS = 7 * 24 * 3600.0
AUX_WEIGHT = 0.3  # the GoogLeNet and Inception papers' weight of each auxiliary classifier's loss

# A config rebuilt from a finished run's env.json (by merge, on a machine that may lack its GPU) is not checked.
_TRUSTED = contextvars.ContextVar("trusted_config", default=False)


@dataclass(frozen=True)
class SweepConfig:
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool = True       # these three are applied by the process that measures (convbench.run.settings)
    tf32: bool | None = None           # None: PyTorch's defaults (fp32 matmuls, TF32 cuDNN convolutions)
    threads: int | None = None         # None: torch's default
    out: Path | None = None
    overwrite: bool = False            # replace the run already in `out` (convbench.results.folders)
    isolate: bool | None = None        # each unit in a child process; None: on for CUDA (convbench.run.sweep)
    timeout: float = 900.0             # seconds a child may stay silent before it is killed
    shard: tuple | None = None         # (index from 1, count, source): only this shard's units (convbench.run.shard)

    def __post_init__(self) -> None:
        if not _TRUSTED.get():
            self.check()

    def check(self) -> None:
        validate_device(self.device)
        validate_dtype(self.dtype, self.device)
        validate_threads(self.threads)
        finite_positive(self.timeout, "--timeout")

    @property
    def isolated(self) -> bool:
        """Whether each unit runs in a child process: as asked, else on CUDA, where what one model does to the
        process (a fragmented allocator, an illegal memory access) must end that model's rows only."""
        return self.device.startswith("cuda") if self.isolate is None else self.isolate

    @property
    def compiled(self) -> bool:
        return False


@dataclass(frozen=True)
class ProfileConfig(SweepConfig):
    arch: str = "all"
    batch_sizes: tuple[int, ...] = (1,)
    compile: bool = False              # shorthand for modes=("compile",)
    metrics: str = "all"
    modes: tuple[str, ...] | None = None  # eager, compile, graphs, compile+graphs (convbench.run.modes)
    warmup: int = 5
    iters: int | None = None
    min_time: float = 1.0
    input_size: int | tuple[int, int, int] | None = None   # a square size, or C, H, W
    output: str | None = None          # the entry of a forward's dict or tuple output to take (convbench.zoo.outputs)
    formats: tuple[str, ...] = ("csv",)
    by_layer: bool = False
    cpu_memory: bool = True
    counter: str = "dispatch"          # MACs and activations: dispatch (meta device, default) or fvcore
    ceiling: bool = True               # measure (once per machine, cached) the ceiling rows report their share of
    all_matching: bool = False         # take every model a pattern matches, above convbench.zoo.libraries.PATTERN_LIMIT
    batch_given: bool = True           # the batch sizes were asked for (a CLI run's --batch-size, or a caller's)

    @property
    def saved_asked(self) -> bool:
        """Whether saved bytes are a figure this run asked for: a counts-only run at the default batch did not, so
        one that cannot be taken there (a batch norm over a 1x1 grid at batch 1) leaves a note, not a partial row."""
        return self.metrics != "static" or self.batch_given

    def check(self) -> None:
        super().check()
        validate_batches(self.batch_sizes)
        validate_formats(self.formats)
        if self.metrics not in METRICS:
            raise UserError(f"unknown metrics {self.metrics!r}; choose static, all or instructions")
        if self.metrics == "instructions":
            if self.device != "cpu":
                raise UserError("--metrics instructions counts what the CPU executes (valgrind); use it with --device cpu")
            try:
                instructions.valgrind()
            except instructions.CountFailed as exc:
                raise UserError(str(exc)) from None
        validate_count(self.warmup, "--warmup", 0, MAX_WARMUP)
        if self.iters is not None:
            validate_count(self.iters, "--iters", 1, MAX_ITERS)
        finite_positive(self.min_time, "--min-time", MAX_SECONDS)
        validate_input(self.input_size)
        validate_counter(self.counter)
        modes.validate_modes(self.run_modes, self.device)

    @property
    def run_modes(self) -> tuple[str, ...]:
        return run_modes(self.modes, self.compile)

    @property
    def row_modes(self) -> tuple[str, ...]:
        """The modes a model owes a row in: a static sweep counts once per batch size."""
        return self.run_modes if self.metrics == "all" else self.run_modes[:1]


def run_modes(chosen: tuple[str, ...] | list[str] | None, compile: bool) -> tuple[str, ...]:
    return tuple(chosen) if chosen else (("compile",) if compile else ("eager",))


@dataclass(frozen=True)
class CompareConfig(SweepConfig):
    name: str = "all"                  # a comparison, all, or a comma list of designs (the first the baseline)
    batch_sizes: tuple[int, ...] = (1,)
    shape: tuple[int, int, int] | None = None
    claims: tuple[float, ...] | None = None  # designs: each variant's claimed cost over the baseline
    output: str | None = None          # designs: the entry of a forward's dict or tuple output to take
    warmup: int = 3
    pairs: int = 15
    formats: tuple[str, ...] = ("csv", "md")
    mode: str = "eager"                # eager, compile, graphs or compile+graphs (convbench.run.modes)
    counter: str = "dispatch"          # MACs and activations: dispatch (meta device) or fvcore

    def check(self) -> None:
        super().check()
        validate_batches(self.batch_sizes)
        validate_formats(self.formats)
        validate_counter(self.counter)
        modes.validate_modes((self.mode,), self.device)
        validate_count(self.warmup, "--warmup", 0, MAX_WARMUP)
        validate_count(self.pairs, "--pairs", MIN_PAIRS, MAX_ITERS)
        if self.shape is not None and (len(self.shape) != 3 or min(self.shape) < 1):
            raise UserError("--shape is C,H,W with three positive integers")
        validate_input(self.shape)
        named = self.name in (*COMPARISONS, "all")
        for option, given in (("--claim", self.claims), ("--output", self.output)):
            if given is not None and named:  # refused rather than ignored: a named comparison brings its own
                raise UserError(f"{option} is for designs you name (compare a,b); the {self.name} comparison's "
                                f"{'claims come from its papers' if option == '--claim' else 'cases choose their outputs'}")
        if self.claims is not None and not all(math.isfinite(c) and c > 0 for c in self.claims):
            raise UserError("--claim takes positive ratios, e.g. 0.29 for a variant claimed to cost 29% of the baseline")

    @property
    def compiled(self) -> bool:
        return "compile" in self.mode


@dataclass(frozen=True)
class TrainConfig(SweepConfig):
    arch: str = "resnet18"
    steps: int = 50
    batch_size: int = 32
    compile: bool = False
    lr: float = 0.02
    data: str = "synthetic"
    seed: int = 0
    nproc_per_node: int = 1
    compare: str | None = None
    input_size: int | tuple[int, int, int] | None = None
    output: str | None = None
    log_every: int = 10
    warmup_steps: int = 3
    timeout: float = 1800.0            # seconds a child may stay silent (no step) before it is killed
    label_smoothing: float = 0.0       # Inception-v3 section 7's regularisation: epsilon of the uniform target
    aux_weight: float | None = None    # the auxiliary heads' loss weight; None: AUX_WEIGHT where a model has them

    def check(self) -> None:
        super().check()
        validate_batches((self.batch_size,))
        validate_count(self.steps, "--steps", 1, MAX_ITERS)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.nproc_per_node < 1:
            raise UserError("--nproc-per-node must be at least 1")
        if self.device.startswith("cuda") and self.nproc_per_node > torch.cuda.device_count():
            raise UserError(f"--nproc-per-node {self.nproc_per_node} asks for one GPU per process, but torch sees "
                            f"{torch.cuda.device_count()} GPU{'s' if torch.cuda.device_count() != 1 else ''} here")
        if self.compare is not None and self.compare not in TRAIN_PAIRS:
            raise UserError(f"unknown --compare {self.compare!r}; choose one of {', '.join(TRAIN_PAIRS)}")
        if self.log_every < 1:
            raise UserError(f"--log-every must be at least 1, got {self.log_every}")
        if self.warmup_steps < 0:
            raise UserError(f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        if not (0 <= self.label_smoothing < 1):  # NaN fails here too
            raise UserError(f"--label-smoothing is an epsilon from 0 to below 1 (0.1 in Inception-v3), got {self.label_smoothing}")
        if self.aux_weight is not None and not (0 <= self.aux_weight < 1e6):
            raise UserError(f"--aux-weight must be 0 or more (0 drops the auxiliary heads), got {self.aux_weight}")
        validate_input(self.input_size)
        if self.shard and self.nproc_per_node > 1:
            raise UserError("--nproc-per-node launches DDP itself; it cannot run inside a sharded sweep")

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return (self.batch_size,)

    @property
    def formats(self) -> tuple[str, ...]:
        return ("csv",)

    @property
    def compiled(self) -> bool:
        return self.compile


def validate_dtype(dtype: str, device: str) -> None:
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "fp16" and device == "cpu":
        raise UserError("fp16 is for CUDA; on the CPU use bf16 or fp32")


def validate_batches(batch_sizes: tuple[int, ...]) -> None:
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise UserError(f"batch sizes must be positive integers, got {','.join(map(str, batch_sizes)) or 'none'}")
    if max(batch_sizes) > MAX_ITERS:
        raise UserError(f"batch size {max(batch_sizes)} is beyond any device's memory")


def validate_formats(formats: tuple[str, ...]) -> None:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if "parquet" in formats and importlib.util.find_spec("pyarrow") is None:
        raise UserError('--format parquet needs pyarrow, which is not installed: pip install "convbench[parquet]"')


def validate_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= 4096:
        raise UserError(f"--threads must be between 1 and 4096, got {threads}")


def validate_counter(counter: str) -> None:
    if counter not in COUNTERS:
        raise UserError(f"unknown counter {counter!r}; choose dispatch or fvcore")


def validate_count(value: int, what: str, low: int, high: int) -> None:
    if value < low:
        raise UserError(f"{what} must be at least {low}" if low else f"{what} must be 0 or more")
    if value > high:
        raise UserError(f"{what} {value} is beyond any real run (at most {high:,})")


def finite_positive(value: float, what: str, high: float = MAX_SECONDS) -> None:
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what} must be a positive number of seconds, got {value}")
    if value > high:
        raise UserError(f"{what} {value:g} is beyond any real run (at most {high:g} s)")


def validate_input(size: int | tuple[int, ...] | None) -> None:
    if size is None:
        return
    shape = (3, size, size) if isinstance(size, int) else tuple(size)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError("--input-size must be positive" if isinstance(size, int) else
                        "--input-shape is C,H,W with three positive integers")
    if shape[0] > 1 << 16 or max(shape[1:]) > 1 << 16:
        raise UserError(f"input {'x'.join(map(str, shape))} is beyond any real image")


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    parts = [v.strip() for v in text.split(",")]
    try:
        if not text.strip() or any(not v for v in parts):
            raise ValueError
        return tuple(int(v) for v in parts)
    except ValueError:
        raise UserError(f"{what} must be integers separated by commas, got {text!r}") from None


def parse_float_list(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in parse_list(text, what))
    except ValueError:
        raise UserError(f"{what} must be numbers separated by commas, got {text!r}") from None


def parse_input(size: int | None, shape: str | None) -> int | tuple[int, int, int] | None:
    """--input-size N (a square of 3 channels) or --input-shape C,H,W; not both."""
    if size is not None and shape is not None:
        raise UserError("--input-size and --input-shape both give the input; keep one")
    if shape is None:
        validate_input(size)
        return size
    parts = parse_int_list(shape, "--input-shape")
    if len(parts) not in (1, 3):
        raise UserError(f"--input-shape is C,H,W (three integers), got {shape!r}")
    chosen = parts[0] if len(parts) == 1 else parts
    validate_input(chosen)
    return chosen


def parse_percent(text: str, what: str) -> float:
    """'25%' or '0.25' -> 0.25."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"{what} must be a percentage such as 25%, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"{what} must be above 0%, got {text!r}")
    return value


Config = TypeVar("Config")


def to_payload(config: Any) -> dict[str, Any]:
    """A frozen config as JSON-ready fields with their types (numbers stay numbers): for env.json, a child process
    and a DDP rank alike."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def from_payload(cls: type[Config], data: dict[str, Any], trusted: bool = False, **changes: Any) -> Config:
    """The inverse of to_payload: lists back to tuples, `out` back to a Path; fields the class does not have (a
    newer or older convbench's) are left out. `trusted`: not checked again (a finished run's own config)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    if values.get("out") is not None:
        values["out"] = Path(values["out"])
    token = _TRUSTED.set(trusted)
    try:
        return cls(**{**values, **changes})
    finally:
        _TRUSTED.reset(token)

"""`convbench compare NAME`: claimed vs counted vs measured, per case and variant.

Counts use profile's measurers (fvcore MACs and activations, exact saved bytes); latency ratios come from
paired interleaved runs against the case's baseline; the verdict says how much of the MAC saving the
measured time realises."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from convbench.comparisons import Case, get_cases
from convbench.config import (DTYPES, from_payload, to_payload, validate_counter, validate_run,
                              validate_threads)
from convbench.errors import UserError, error_text, is_oom
from convbench.isolate import Child
from convbench import ceiling, modes, outdirs, peers, settings
from convbench.shard import Shard, mine, sweep_record
from convbench.units import percent
from convbench.measure import complexity, device_time, host_load, memory
from convbench.measure.device_time import LAUNCH_BOUND
from convbench.measure.paired import drift, drift_note, median_ci, paired_times
from convbench.results import CONTEXT_COLUMNS, ResultSink, environment, now

if TYPE_CHECKING:
    import pandas as pd

COMPARE_COLUMNS = [
    "comparison", "case", "variant", "baseline", "claim", "input_shape", "batch_size", "mode", "status", "error", "note",
    "params", "macs", "acts", "counter", "claimed_ratio", "counted_ratio", "params_ratio", "measured_ratio", "ratio_ci_low",
    "ratio_ci_high", "device_ms", "gpu_busy", "launch_bound", "device_ratio", "saving_realized", "verdict", "latency_ms_p50", "pct_peak", "pairs", "drift", "host_busy", "busy", "saved_act_bytes", "saved_act_ratio",
    "peak_mem_infer_bytes", "peak_mem_ratio", "max_abs_diff", "row_id", *CONTEXT_COLUMNS,
]


# compare.md: the columns that answer the claim; the CSV keeps every one.
READER_COLUMNS = ["case", "variant", "batch_size", "mode", "macs", "claimed_ratio", "counted_ratio", "measured_ratio",
                  "ratio_ci_low", "ratio_ci_high", "device_ratio", "gpu_busy", "verdict", "status", "error"]


@dataclass(frozen=True)
class CompareConfig:
    name: str = "all"
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    dtype: str = "fp32"
    channels_last: bool = False
    shape: tuple[int, int, int] | None = None
    warmup: int = 3
    pairs: int = 15
    out: Path | None = None
    overwrite: bool = False
    formats: tuple[str, ...] = ("csv", "md")
    mode: str = "eager"                # eager, compile, graphs or compile+graphs (convbench.modes)
    cudnn_benchmark: bool = True       # applied by the process that measures (convbench.settings)
    tf32: bool | None = None           # None: PyTorch's defaults (fp32 matmuls, TF32 cuDNN convolutions)
    threads: int | None = None
    counter: str = "dispatch"          # MACs and activations: dispatch (meta device) or fvcore
    isolate: bool | None = None        # whole-network cases in a child process; None: on for CUDA
    timeout: float = 900.0             # seconds an isolated case may stay silent before its child is killed
    shard: tuple | None = None         # (index from 1, count, source): only this shard's cases (convbench.shard)

    def __post_init__(self) -> None:
        validate_run(self.device, self.batch_sizes, self.dtype, self.formats)
        if not self.timeout > 0:
            raise UserError("--timeout must be positive")
        validate_counter(self.counter)
        modes.validate_modes((self.mode,), self.device)
        validate_threads(self.threads)
        if self.pairs < 3:
            raise UserError("--pairs must be at least 3")
        if self.shape is not None and (len(self.shape) != 3 or min(self.shape) < 1):
            raise UserError("--shape is C,H,W with three positive integers")

    @property
    def isolated(self) -> bool:
        return self.device.startswith("cuda") if self.isolate is None else self.isolate


# MAC ratios within 5% of 1 are "equal MACs": ResNeXt's Table 2 keeps each width's complexity within about 3% of
# the 1x64d block (8x14d is 1.026x here), which its authors call the same.
EQUAL_MACS = 0.05


def _judge(counted: float, measured: float, what: str) -> tuple[float, str]:
    """(share of the MAC saving realised, verdict). The share is (1 - measured) / (1 - counted): 1 when time falls
    as much as MACs, 0 when it does not fall, negative when the variant is slower despite fewer MACs. It exists
    only where the variant saves MACs: near equal MACs the division would turn noise into -13.42."""
    if abs(counted - 1) <= EQUAL_MACS:
        return float("nan"), f"equal MACs (within {EQUAL_MACS:.0%}); {measured:.2f}x the {what}"
    if counted > 1:
        return float("nan"), f"{measured:.2f}x the {what} for {counted:.2f}x the MACs"
    realized = (1 - measured) / (1 - counted)
    if measured >= 1:
        return realized, f"no speed-up: {measured:.2f}x the {what} for {counted:.2f}x the MACs"
    return realized, f"{min(realized, 9.99):.0%} of the MAC saving realised ({measured:.2f}x {what} for {counted:.2f}x MACs)"


def verdict(counted: float, measured: float, device_ratio: float | None = None,
            gpu_busy: float | None = None) -> tuple[float, str]:
    """How much of the counted MAC change shows up in the measured time. Where the baseline or the variant is
    launch-bound (`gpu_busy`, the lower of the two, below LAUNCH_BOUND), the latency measures the host launching
    kernels, not the design: the verdict says so and judges on the GPU's own time, the device-time ratio."""
    if measured is None or math.isnan(measured):
        return float("nan"), ""
    bound = gpu_busy is not None and not math.isnan(gpu_busy) and gpu_busy < LAUNCH_BOUND
    if bound and device_ratio is not None and not math.isnan(device_ratio):
        realized, text = _judge(counted, device_ratio, "device time")
        return realized, f"launch-bound: GPU busy {gpu_busy:.0%}; device-time ratio {device_ratio:.2f}: {text}"
    return _judge(counted, measured, "time")


def _ratio(a: Any, b: Any) -> float:
    try:
        return float(b) / float(a) if float(a) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class CompareRun:
    rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.rows, columns=COMPARE_COLUMNS)


def _shape_for(case: Case, config: CompareConfig) -> tuple[int, int, int]:
    return case.shape if case.whole_network or config.shape is None else config.shape


def _counts(build: Callable[[], nn.Module], shape: tuple[int, int, int], batch_size: int, counter: str) -> dict[str, Any]:
    with torch.device("meta"):
        meta = build()
    traced = complexity.count(meta, (1, *shape), counter)
    with torch.device("meta"):
        saved = memory.count_saved_bytes(build(), torch.zeros(batch_size, *shape, device="meta"))
    return {"params": complexity.count_params(meta), "macs": traced["macs"], "acts": traced["acts"],
            "saved_act_bytes": saved["saved_act_bytes"]}


def _max_abs_diff(case: Case, variants: dict[str, nn.Module], x: torch.Tensor) -> dict[str, float]:
    """For the ResNeXt forms: map (c)'s weights into (a) and (b) and compare outputs. In full fp32 on every device
    (TF32 off for the check): with TF32 a GPU's convolutions round to 10 bits of mantissa and the forms would
    differ by about 1e-2, which says nothing about whether they compute the same function."""
    from convbench.blocks.resnext import GroupedBottleneck, load_from_grouped
    base = variants[case.variants[0].name]
    if not isinstance(base, GroupedBottleneck):
        return {}
    diffs = {}
    with torch.no_grad(), settings.applied(settings.FullFp32(x.device.type)):
        ref = base(x.float())
        for name, module in variants.items():
            if module is base or not hasattr(module, "paths"):
                continue
            load_from_grouped(module, base)
            diffs[name] = (module(x.float()) - ref).abs().max().item()
    return diffs


def _context(config: CompareConfig) -> dict[str, Any]:
    return settings.live_context(config.device, config.dtype, config.channels_last, "compile" in config.mode)


def _variant_row(case: Case, variant, shape: tuple[int, int, int], bs: int, config: CompareConfig) -> dict[str, Any]:
    return {"comparison": case.comparison, "case": case.name, "variant": variant.name, "baseline": case.variants[0].name,
            "claim": case.claim, "input_shape": "x".join(map(str, shape)), "batch_size": bs, "mode": config.mode,
            "claimed_ratio": variant.claimed_ratio}


def _case_rows(case: Case, bs: int, config: CompareConfig) -> list[dict[str, Any]]:
    shape = _shape_for(case, config)
    channels = shape[0]
    device = torch.device(config.device)
    base_name = case.variants[0].name
    rows = []
    for v in case.variants:
        row = _variant_row(case, v, shape, bs, config)
        try:
            row.update(_counts(lambda: v.build(channels), shape, bs, config.counter), counter=config.counter)
            row["status"] = "ok"
        except Exception as exc:
            row.update(status="error", error=f"counting failed: {error_text(exc)}")
        rows.append(row)
    modules: dict[str, nn.Module] = {}
    try:
        for v in case.variants:
            module = v.build(channels).to(device).eval()
            modules[v.name] = module.to(memory_format=torch.channels_last) if config.channels_last else module
        x = torch.randn(bs, *shape, device=device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        _measure(case, modules, x, rows, config)
        diffs = _max_abs_diff(case, modules, x)
        for row in rows:
            if row["variant"] in diffs:
                row["max_abs_diff"] = diffs[row["variant"]]
    except Exception as exc:
        for row in rows:
            if row["status"] == "ok":
                row.update(status="oom" if is_oom(exc) else "error", error=error_text(exc))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    base = rows[0]
    peak = ceiling.cached(config.device)
    for row in rows:
        row.update(share_of_peak(row, bs, config.dtype, peak))
    for row in rows:
        row["counted_ratio"] = _ratio(base.get("macs"), row.get("macs"))
        row["params_ratio"] = _ratio(base.get("params"), row.get("params"))
        row["saved_act_ratio"] = _ratio(base.get("saved_act_bytes"), row.get("saved_act_bytes"))
        row["peak_mem_ratio"] = _ratio(base.get("peak_mem_infer_bytes"), row.get("peak_mem_infer_bytes"))
        row["device_ratio"] = _ratio(base.get("device_ms"), row.get("device_ms"))
        busy = [b for b in (base.get("gpu_busy"), row.get("gpu_busy")) if b is not None]
        row["saving_realized"], row["verdict"] = verdict(row["counted_ratio"], row.get("measured_ratio", float("nan")),
                                                         row["device_ratio"], min(busy) if busy else None)
        if row["variant"] == base_name:
            row["verdict"] = "baseline"
        elif row["verdict"]:
            row["verdict"] += peak_clause(row, base)
        row.update(_context(config), timestamp=now())
    return rows


def share_of_peak(row: dict[str, Any], batch: int, dtype: str, peak: ceiling.Ceiling | None) -> dict[str, Any]:
    """The row's achieved FLOP/s as a share of this machine's measured peak for the dtype."""
    tflops = peak.tflops(dtype) if peak else None
    latency, macs = row.get("latency_ms_p50"), row.get("macs")
    if not tflops or not latency or macs is None or math.isnan(latency):
        return {}
    return {"pct_peak": 2 * macs * batch / (latency / 1e3) / 1e12 / tflops}


# A variant that saves MACs but runs at under this share of the baseline's share of peak is said to (grouped
# convolution is the classic case: a thirty-second of the MACs, at a far lower share of what the machine can do).
LOWER_SHARE = 0.8


def peak_clause(row: dict[str, Any], base: dict[str, Any]) -> str:
    mine, theirs = row.get("pct_peak"), base.get("pct_peak")
    if mine is None or theirs is None or not row["counted_ratio"] < 1 - EQUAL_MACS or not mine < LOWER_SHARE * theirs:
        return ""
    return f"; it runs at {percent(mine)} of peak, the baseline at {percent(theirs)}"


def _measure(case: Case, modules: dict[str, nn.Module], x: torch.Tensor, rows: list[dict[str, Any]], config: CompareConfig) -> None:
    device = torch.device(config.device)
    dtype = DTYPES[config.dtype]

    forwards = {name: modes.prepare(m, x, config.mode, device, dtype, config.warmup) for name, m in modules.items()}
    base_name = case.variants[0].name
    base_times: list[float] = []
    for row in rows:
        name = row["variant"]
        if name == base_name:
            continue
        start = host_load.snapshot()
        pairs = paired_times(forwards[base_name], forwards[name], device, config.warmup, config.pairs)
        row.update(host_load.load_columns(start, host_load.snapshot()))
        mine, theirs = [b for _, b in pairs], [a for a, _ in pairs]
        base_times += theirs
        ratio, lo, hi = median_ci([b / a for a, b in pairs])
        row.update(measured_ratio=ratio, ratio_ci_low=lo, ratio_ci_high=hi, pairs=len(pairs),
                   latency_ms_p50=median_ci(mine)[0], drift=drift(mine),
                   _samples=[{"baseline_ms": a, "latency_ms": b} for a, b in pairs])
        notes = [drift_note("variant", mine), drift_note("baseline", theirs)]
        row["note"] = "; ".join(n for n in notes if n) or None
    loads = [r["host_busy"] for r in rows[1:] if r.get("host_busy") is not None]
    if loads:  # the baseline ran in every variant's pairs
        rows[0].update(host_busy=max(loads), busy=any(r.get("busy") for r in rows[1:]))
    rows[0].update(measured_ratio=1.0, ratio_ci_low=1.0, ratio_ci_high=1.0, pairs=len(base_times),
                   latency_ms_p50=median_ci(base_times)[0] if base_times else float("nan"),
                   _samples=[{"latency_ms": a} for a in base_times])
    if device.type == "cuda":
        for row in rows:
            row.update(device_time.device_columns(forwards[row["variant"]], device, row["latency_ms_p50"]))
            row["peak_mem_infer_bytes"] = memory.cuda_peaks(modules[row["variant"]], x, dtype, train=False)["peak_mem_infer_bytes"]
    else:  # empty with its reason; on screen the CLI says it once, under the tables
        for row in rows:
            row["note"] = "; ".join(filter(None, [row.get("note"), CPU_MEMORY_NOTE]))


CPU_MEMORY_NOTE = "CPU peak memory is not measured for blocks (saved_act_ratio is exact)"


def compare_case_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The child's half of --isolate: one case at one batch size (convbench.isolate), under the settings it
    applies itself."""
    config = from_payload(CompareConfig, payload["config"], isolate=False)
    case = next(c for c in get_cases(config.name) if c.name == payload["case"])
    send({"stage": "measuring", "key": payload["batch_size"]})
    with settings.applied(config):
        for row in _case_rows(case, payload["batch_size"], config):
            send({"row": row})


def _isolated_case_rows(case: Case, bs: int, config: CompareConfig) -> list[dict[str, Any]]:
    child = Child("convbench.compare:compare_case_child",
                  {"config": to_payload(config), "case": case.name, "batch_size": bs}, config.timeout)
    rows = list(child.rows())
    if len(rows) == len(case.variants):
        return rows
    shape = _shape_for(case, config)
    return [{**_variant_row(case, v, shape, bs, config), **_context(config), "status": "error", "error": child.end.describe(),
             "timestamp": now()} for v in case.variants]


def case_cost(case: Case, config: CompareConfig) -> float:
    """A case's share of a sweep: its variants' MACs x images (counted on the meta device)."""
    shape = _shape_for(case, config)
    total = 0
    for v in case.variants:
        try:
            with torch.device("meta"):
                total += complexity.count(v.build(shape[0]), (1, *shape))["macs"]
        except Exception:
            total += 1
    return float(total) * sum(config.batch_sizes)


def run_compare(config: CompareConfig, on_row: Callable[[dict[str, Any]], None] | None = None) -> CompareRun:
    cases = get_cases(config.name)
    out = outdirs.claim(Path(config.out), config.overwrite) if config.out is not None else None
    names = [c.name for c in cases]
    shard = Shard(*config.shard) if config.shard else None
    cases = mine(cases, lambda c: case_cost(c, config), shard)
    env = {**environment(config.device), "config": config.__dict__,
           "sweep": sweep_record("compare", config, names, [c.name for c in cases], shard)}
    env["ceiling"] = ceiling.record(config)  # the peak a verdict can compare shares of
    with ResultSink(out, "compare", COMPARE_COLUMNS, config.formats, env, on_row, READER_COLUMNS) as sink, \
            settings.applied(config), peers.measuring():
        for case in cases:
            for bs in config.batch_sizes:
                isolated = config.isolated and case.whole_network
                for row in (_isolated_case_rows if isolated else _case_rows)(case, bs, config):
                    sink.add(row)
    return CompareRun(sink.rows, sink.interrupted)


def compare(name: str = "all", device: str = "cpu", batch_sizes=(1,), out: str | Path | None = None, **options) -> pd.DataFrame:
    """Library call behind `convbench compare`; options are CompareConfig's fields."""
    config = CompareConfig(name=name, device=device, batch_sizes=tuple(batch_sizes), out=Path(out) if out else None, **options)
    return run_compare(config).frame

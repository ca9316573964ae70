"""Expands models x batch sizes into rows and measures them; a failure becomes a row, never the end of a sweep.

Model-level counts (params, MACs, activations) are taken once per model from a meta-device build and one
fvcore trace; batch-level figures (saved bytes, timing, memory) once per row."""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
from torch import nn

from convbench.cache import CountCache
from convbench.errors import error_text, is_oom
from convbench.isolate import Child
from convbench.config import DTYPES, ProfileConfig, autocast, from_payload, prepare_out_dir, to_payload
from convbench.measure import complexity, host_load, layer_times, memory, timing
from convbench.results import PROFILE_COLUMNS, ResultSink, environment, now, run_context
from convbench.specs import ModelSpec, resolve_models

LAYER_COLUMNS = ["model", "module", "params", "macs", "acts", "cpu_time_us", "device_time_us"]
OnRow = Callable[[dict[str, Any]], None]


def model_counts(spec: ModelSpec, by_layer: bool = False) -> dict[str, Any]:
    """Batch-independent counts: params from a meta build, MACs and activations from one fvcore trace."""
    meta = spec.build("meta")
    counts: dict[str, Any] = {"params": complexity.count_params(meta), "param_bytes": complexity.param_bytes(meta)}
    traced = complexity.fvcore_counts(complexity.materialize(copy.deepcopy(meta)), (1, 3, spec.input_size, spec.input_size),
                                      by_module=by_layer)
    unsupported = ";".join(f"{op}:{n}" for op, n in traced["unsupported_ops"].items())
    counts.update(macs=traced["macs"], acts=traced["acts"], unsupported_ops=unsupported)
    if by_layer:
        params = {n: sum(p.numel() for p in m.parameters()) for n, m in meta.named_modules()}
        counts["layers"] = [{"model": spec.name, "module": name or "(model)", "params": params.get(name, 0), **c}
                            for name, c in traced["modules"].items()]
    return counts


@dataclass
class LiveModel:
    """The real model on the device, built once per model and reused across batch sizes."""
    module: nn.Module
    compiled: Callable[..., Any]


def build_live(spec: ModelSpec, config: ProfileConfig) -> LiveModel:
    device = torch.device(config.device)
    module = spec.build("cpu").to(device).eval()
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    compiled = torch.compile(module) if config.compile else module
    return LiveModel(module, compiled)


def _autocast(config: ProfileConfig) -> contextlib.AbstractContextManager:
    return autocast(torch.device(config.device).type, DTYPES[config.dtype])


def _device_input(spec: ModelSpec, batch_size: int, config: ProfileConfig) -> torch.Tensor:
    x = torch.randn(batch_size, 3, spec.input_size, spec.input_size, device=torch.device(config.device))
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def measure_speed(spec: ModelSpec, live: LiveModel, batch_size: int, macs: int, config: ProfileConfig) -> dict[str, Any]:
    device = torch.device(config.device)
    x = _device_input(spec, batch_size, config)

    def forward() -> Any:
        with torch.inference_mode(), _autocast(config):
            return live.compiled(x)

    live.module.eval()
    start = host_load.snapshot()
    samples = timing.time_iterations(forward, device, config.warmup, config.iters, config.min_time)
    row: dict[str, Any] = {**timing.summarize(samples), **host_load.load_columns(start, host_load.snapshot())}
    row["_samples"] = [{"latency_ms": v} for v in samples]
    seconds = row["latency_ms_p50"] / 1e3
    row["throughput_img_s"] = batch_size / seconds
    row["achieved_tflops"] = 2 * macs * batch_size / seconds / 1e12
    return row


def measure_memory(spec: ModelSpec, live: LiveModel, batch_size: int, config: ProfileConfig) -> dict[str, Any]:
    """Memory in its own pass, after timing and never inside the timed loop; a failure here costs the row its
    memory columns only."""
    device = torch.device(config.device)
    if device.type == "cuda":
        try:
            peaks = memory.cuda_peaks(live.compiled, _device_input(spec, batch_size, config), DTYPES[config.dtype])
        finally:
            live.module.eval()
    elif config.cpu_memory:
        peaks = memory.cpu_peaks_in_child(spec, batch_size, config.dtype, config.channels_last)
        if config.compile:
            peaks["mem_note"] = "; ".join(filter(None, [peaks.get("mem_note"), "CPU memory peaks are of the eager (uncompiled) model"]))
    else:
        peaks = {"mem_note": "CPU peak memory not measured (cpu_memory off)"}
    note = peaks.pop("mem_note", None)
    return {**peaks, "error": note} if note else peaks


def _layer_times(spec: ModelSpec, live: LiveModel, batch_size: int, config: ProfileConfig) -> dict[str, dict[str, float]]:
    device = torch.device(config.device)
    x = _device_input(spec, batch_size, config)

    def forward() -> Any:
        with torch.inference_mode(), _autocast(config):
            return live.module(x)

    trace = Path(config.out) / f"trace_{_file_safe(spec.name)}_b{batch_size}.json" if config.out is not None else None
    return layer_times.module_times(live.module.eval(), forward, device, trace_path=trace)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _merge_layer_times(layers: list[dict[str, Any]], times: dict[str, dict[str, float]]) -> None:
    for layer in layers:
        layer.update(times.get(layer["module"], {}))


@dataclass
class ProfileRun:
    config: ProfileConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    layer_rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(PROFILE_COLUMNS))


OnStage = Callable[[str, int], None]


class _Row:
    """One (model, batch) row being filled: each measurement fails on its own, leaving its columns empty."""

    def __init__(self, values: dict[str, Any], on_stage: OnStage | None = None) -> None:
        self.values = values
        self.on_stage = on_stage
        self.failures: list[tuple[str, str, str]] = []

    def attempt(self, label: str, measure: Callable[[], dict[str, Any]]) -> None:
        if self.on_stage:
            self.on_stage(label, self.values["batch_size"])
        try:
            self.values.update(measure())
        except Exception as exc:
            oom = is_oom(exc)
            if oom and torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.failures.append((label, "oom" if oom else "error", error_text(exc)))

    def finish(self) -> dict[str, Any]:
        """status: ok; oom or error when the model could not be built or timed; partial when another measure failed."""
        row = self.values
        notes = [f"{label}: {text}" for label, _, text in self.failures]
        if row.get("error"):
            notes.append(row["error"])
        row["error"] = "; ".join(notes) or None
        essential_failure = next((kind for label, kind, _ in self.failures if label in ("build", "timing")), None)
        row["status"] = essential_failure or ("partial" if notes else "ok")
        row["timestamp"] = now()
        return row


def _base_values(spec: ModelSpec, context: dict[str, Any]) -> dict[str, Any]:
    return {"model": spec.name, "family": spec.family, "input_size": spec.input_size, **context}


def _model_rows(spec: ModelSpec, config: ProfileConfig, context: dict[str, Any], cache: CountCache,
                on_stage: OnStage | None = None) -> Iterator[dict[str, Any]]:
    base = _base_values(spec, context)
    cacheable = spec.family != "custom" and not config.by_layer

    def cached(key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return cache.get_or_compute(f"{spec.name}@{spec.input_size}:{key}", compute) if cacheable else compute()

    if on_stage:
        on_stage("counting", config.batch_sizes[0])
    try:
        counts = cached("counts", lambda: model_counts(spec, by_layer=config.by_layer))
    except Exception as exc:  # a model that cannot be built or traced still gets its rows
        for bs in config.batch_sizes:
            yield {**base, "batch_size": bs, "status": "error", "error": f"counting failed: {error_text(exc)}", "timestamp": now()}
        return
    layers = counts.pop("layers", [])
    live: LiveModel | None = None
    for bs in config.batch_sizes:
        row = _Row({**base, "batch_size": bs, **counts}, on_stage)
        if bs == config.batch_sizes[0] and layers:
            row.values["_layers"] = layers
        row.attempt("saved_bytes", lambda: cached(f"saved:{bs}:{config.dtype}:{torch.device(config.device).type}",
                                                  lambda: memory.saved_bytes(spec, bs, config.dtype, config.device)))
        if config.metrics == "all":
            if live is None:
                row.attempt("build", lambda: {"_live": build_live(spec, config)})
                live = row.values.pop("_live", None)
            if live is not None:
                row.attempt("timing", lambda: measure_speed(spec, live, bs, counts["macs"], config))
                row.attempt("memory", lambda: measure_memory(spec, live, bs, config))
                if layers and bs == config.batch_sizes[0]:
                    row.attempt("layer_times", lambda: {"_layer_times": _layer_times(spec, live, bs, config)})
                    _merge_layer_times(layers, row.values.pop("_layer_times", {}))
        yield row.finish()


def profile_model_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The child's half of --isolate: one model's rows (convbench.isolate)."""
    config = from_payload(ProfileConfig, payload["config"], isolate=False)
    spec = resolve_models(payload["arch"], config.input_size)[0]
    cache = CountCache()
    try:
        for row in _model_rows(spec, config, payload["context"], cache, lambda stage, bs: send({"stage": stage, "key": bs})):
            send({"row": row})
    finally:
        cache.save()


def _isolated_model_rows(spec: ModelSpec, config: ProfileConfig, context: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One model's rows from a child process; a child that dies leaves error rows that say how and where."""
    child = Child("convbench.runner:profile_model_child",
                  {"config": to_payload(config), "arch": spec.name, "context": context}, config.timeout)
    done: set[int] = set()
    for row in child.rows():
        done.add(row["batch_size"])
        yield row
    missing = [bs for bs in config.batch_sizes if bs not in done]
    if missing and child.end.ok:  # a child that exits cleanly owes every row
        child.end.how = "child exited without finishing its rows"
    for bs in missing:
        died_here = child.end.key == bs or (child.end.key is None and bs == missing[0])
        text = child.end.describe() if died_here else f"not run: {child.end.describe()}"
        yield {**_base_values(spec, context), "batch_size": bs, "status": "error", "error": text, "timestamp": now()}


def run_profile(config: ProfileConfig, on_row: OnRow | None = None, on_start: Callable[[int], None] | None = None) -> ProfileRun:
    """Measure every (model, batch size) of the config; write rows to config.out as they finish."""
    specs = resolve_models(config.arch, config.input_size)
    out = prepare_out_dir(Path(config.out)) if config.out is not None else None
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    context = run_context(config.device, config.dtype, config.channels_last, config.compile, config.cudnn_benchmark)
    cache = CountCache()
    env = {**environment(config.device), "config": config.__dict__, "columns": PROFILE_COLUMNS}
    layer_rows: list[dict[str, Any]] = []
    if on_start:
        on_start(len(specs) * len(config.batch_sizes))
    try:
        with ResultSink(out, "profile", PROFILE_COLUMNS, config.formats, env, on_row) as sink:
            for spec in specs:
                rows = _isolated_model_rows(spec, config, context) if config.isolated else _model_rows(spec, config, context, cache)
                for row in rows:
                    layer_rows.extend(row.pop("_layers", []))
                    sink.add(row)
    finally:
        cache.save()
    if out is not None and config.by_layer:
        pd.DataFrame(layer_rows, columns=LAYER_COLUMNS).to_csv(out / "layers.csv", index=False)
    run = ProfileRun(config, sink.rows, layer_rows, sink.interrupted)
    return run

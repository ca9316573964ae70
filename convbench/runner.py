"""Expands models x batch sizes into rows and measures them; a failure becomes a row, never the end of a sweep.

Model-level counts (params, MACs, activations) are taken once per model from a meta-device build and one
counted forward on the meta device; batch-level figures (saved bytes, timing, memory) once per row."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from convbench.cache import CountCache
from convbench.config import DTYPES, ProfileConfig, autocast, from_payload, to_payload
from convbench.errors import RowFailure, error_text, is_oom
from convbench.isolate import Child
from convbench import ceiling, modes, outdirs, peers, settings
from convbench.shard import Shard, mine, sweep_record
from convbench.measure import complexity, device_time, host_load, layer_times, memory, timing
from convbench.notes import labelled
from convbench.results import PROFILE_COLUMNS, ResultSink, environment, now
from convbench.specs import ModelSpec, resolve_models

if TYPE_CHECKING:
    import pandas as pd

# profile.md: the columns a reader looks for; the CSV keeps every one.
READER_COLUMNS = ["model", "batch_size", "mode", "dtype", "params", "macs", "latency_ms_p50", "latency_ms_iqr",
                  "throughput_img_s", "achieved_tflops", "gpu_busy", "peak_mem_infer_bytes", "peak_mem_train_bytes",
                  "saved_act_bytes", "status", "error", "note"]
LAYER_COLUMNS = ["model", "module", "params", "macs", "acts", "self_macs", "self_acts", "cpu_time_us", "device_time_us"]
OnRow = Callable[[dict[str, Any]], None]


def model_counts(spec: ModelSpec, by_layer: bool = False, counter: str = "dispatch") -> dict[str, Any]:
    """Batch-independent counts: params from a meta build, MACs and activations from one counted forward."""
    meta = spec.meta()
    counts: dict[str, Any] = {"params": complexity.count_params(meta), "param_bytes": complexity.param_bytes(meta)}
    traced = complexity.count(meta, (1, 3, spec.input_size, spec.input_size), counter, by_module=by_layer)
    unsupported = ";".join(f"{op}:{n}" for op, n in traced["unsupported_ops"].items())
    counts.update(macs=traced["macs"], acts=traced["acts"], unsupported_ops=unsupported)
    if by_layer:
        params = {n: sum(p.numel() for p in m.parameters()) for n, m in meta.named_modules()}
        own = self_counts(traced["modules"], [n for n, _ in meta.named_modules()])
        counts["layers"] = [{"model": spec.name, "module": name or "(model)", "params": params.get(name, 0), **c, **own[name]}
                            for name, c in traced["modules"].items()]
    return counts


def self_counts(inclusive: dict[str, dict[str, int]], names: list[str]) -> dict[str, dict[str, int]]:
    """Each module's own MACs and activations: its inclusive count less its direct children's. What a forward
    computes itself (a functional matmul, F.conv2d) is its module's own, so the own counts of all modules add up
    to the model's."""
    children: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        if name:
            children.setdefault(name.rpartition(".")[0], []).append(name)
    zero = {"macs": 0, "acts": 0}
    return {name: {f"self_{k}": c[k] - sum(inclusive.get(ch, zero)[k] for ch in children.get(name, [])) for k in ("macs", "acts")}
            for name, c in inclusive.items()}


@dataclass
class LiveModel:
    """The real model on the device, built once per model and reused across batch sizes and modes (compiled
    modes compile it afresh for each row: convbench.modes.compiled)."""
    module: nn.Module

    def forward(self, mode: str, x: torch.Tensor, config: ProfileConfig) -> Callable[[], Any]:
        return modes.prepare(self.module, x, mode, torch.device(config.device), DTYPES[config.dtype],
                             warmup=max(config.warmup, 1))


def build_live(spec: ModelSpec, config: ProfileConfig) -> LiveModel:
    device = torch.device(config.device)
    module = spec.build("cpu").to(device).eval()
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return LiveModel(module)


def _autocast(config: ProfileConfig) -> contextlib.AbstractContextManager:
    return autocast(torch.device(config.device).type, DTYPES[config.dtype])


def _device_input(spec: ModelSpec, batch_size: int, config: ProfileConfig) -> torch.Tensor:
    x = torch.randn(batch_size, 3, spec.input_size, spec.input_size, device=torch.device(config.device))
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def measure_speed(spec: ModelSpec, live: LiveModel, batch_size: int, counts: dict[str, Any], config: ProfileConfig,
                  mode: str = "eager") -> dict[str, Any]:
    device = torch.device(config.device)
    live.module.eval()
    forward = live.forward(mode, _device_input(spec, batch_size, config), config)
    start = host_load.snapshot()
    samples = timing.time_iterations(forward, device, config.warmup, config.iters, config.min_time)
    row: dict[str, Any] = {**timing.summarize(samples), **host_load.load_columns(start, host_load.snapshot())}
    row["_samples"] = [{"latency_ms": v} for v in samples]
    seconds = row["latency_ms_p50"] / 1e3
    row["throughput_img_s"] = batch_size / seconds
    row["achieved_tflops"] = 2 * counts["macs"] * batch_size / seconds / 1e12
    flops_per_byte = ceiling.intensity(counts["macs"], batch_size, counts["param_bytes"], counts["acts"], config.dtype)
    row.update(ceiling.row_columns(row["achieved_tflops"], flops_per_byte, config.dtype, ceiling.cached(config.device)))
    if device.type == "cuda":
        row.update(device_time.device_columns(forward, device, row["latency_ms_p50"]))
    return row


def measure_memory(spec: ModelSpec, live: LiveModel, batch_size: int, config: ProfileConfig, mode: str = "eager") -> dict[str, Any]:
    """Memory in its own pass, after timing and never inside the timed loop; a failure here costs the row its
    memory columns only."""
    device = torch.device(config.device)
    if device.type == "cuda":
        try:
            peaks = memory.cuda_peaks(live.module, _device_input(spec, batch_size, config), DTYPES[config.dtype])
        finally:
            live.module.eval()
    elif config.cpu_memory:
        peaks = memory.cpu_peaks_in_child(spec, batch_size, config.dtype, config.channels_last)
    else:
        return {"note": "memory: CPU peaks not measured (cpu_memory off)"}
    failed = peaks.pop("mem_note", None)
    # A compiled module's own training peak would cost a forward-and-backward compilation per row (minutes).
    note = f"memory: peaks are of the eager forward, not the {mode} one" if mode != "eager" else None
    return {**peaks, **({"_failure": failed} if failed else {}), **({"note": note} if note else {})}


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
        import pandas as pd
        return pd.DataFrame(self.rows, columns=list(PROFILE_COLUMNS))


OnStage = Callable[[str, int], None]


class _Row:
    """One (model, batch, mode) row being filled: each measurement fails on its own, leaving its columns empty.
    A measure returns its columns, and may add a `note` (what a column means here, e.g. whose memory it is) or a
    `_failure` (part of it could not be measured: the row is partial)."""

    def __init__(self, values: dict[str, Any], on_stage: OnStage | None = None) -> None:
        self.values = values
        self.on_stage = on_stage
        self.failures: list[tuple[str, str, str]] = []
        self.notes: list[str] = []

    def attempt(self, label: str, measure: Callable[[], dict[str, Any]]) -> None:
        if self.on_stage:
            self.on_stage(label, self.values["batch_size"])
        try:
            values = dict(measure())
        except Exception as exc:
            oom = is_oom(exc)
            if oom and torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.failures.append((label, "oom" if oom else "error", error_text(exc)))
            return
        failure, note = values.pop("_failure", None), values.pop("note", None)
        if failure:
            self.failures.append((label, "error", failure))
        if note:
            self.notes.append(note)
        self.values.update(values)

    def finish(self, context: dict[str, Any]) -> dict[str, Any]:
        """status: ok; oom or error when the model could not be built or timed; partial when another measure
        failed. The context is the measuring process's, read now."""
        row = {**self.values, **context}
        row["error"] = "; ".join(dict.fromkeys(labelled(label, text) for label, _, text in self.failures)) or None
        row["note"] = "; ".join(dict.fromkeys(self.notes)) or None
        essential_failure = next((kind for label, kind, _ in self.failures if label in ("build", "timing")), None)
        row["status"] = essential_failure or ("partial" if self.failures else "ok")
        row["timestamp"] = now()
        return row


def _context(config: ProfileConfig, mode: str = "eager") -> dict[str, Any]:
    return settings.live_context(config.device, config.dtype, config.channels_last, "compile" in mode)


def _error_row(spec: ModelSpec, config: ProfileConfig, bs: int, text: str) -> dict[str, Any]:
    return {"model": spec.name, "family": spec.family, "input_size": spec.input_size, "batch_size": bs,
            **_context(config), "status": "error", "error": text, "timestamp": now()}


def _model_rows(spec: ModelSpec, config: ProfileConfig, cache: CountCache,
                on_stage: OnStage | None = None) -> Iterator[dict[str, Any]]:
    base = {"model": spec.name, "family": spec.family, "input_size": spec.input_size}
    cacheable = spec.family != "custom" and not config.by_layer

    def cached(key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return cache.get_or_compute(f"{spec.name}@{spec.input_size}:{key}", compute) if cacheable else compute()

    if on_stage:
        on_stage("counting", config.batch_sizes[0])
    try:
        counts = cached(f"counts:{config.counter}", lambda: model_counts(spec, config.by_layer, config.counter))
        counts["counter"] = config.counter
    except Exception as exc:  # a model that cannot be built or traced still gets its rows
        text = error_text(exc) if isinstance(exc, RowFailure) else f"counting failed: {error_text(exc)}"
        for bs in config.batch_sizes:
            yield _error_row(spec, config, bs, text)
        return
    layers = counts.pop("layers", [])
    live: LiveModel | None = None
    row_modes = config.run_modes if config.metrics == "all" else config.run_modes[:1]
    for bs in config.batch_sizes:
        # Saved bytes depend on the batch, not on the mode: counted once, shared by the batch's rows.
        saved = _Row({"batch_size": bs}, on_stage)
        saved.attempt("saved_bytes", lambda: cached(f"saved:{bs}:{config.dtype}:{torch.device(config.device).type}",
                                                    lambda: memory.saved_bytes(spec, bs, config.dtype, config.device)))
        for mode in row_modes:
            row = _Row({**base, **saved.values, "mode": mode, **counts}, on_stage)
            row.failures += saved.failures
            if bs == config.batch_sizes[0] and mode == row_modes[0] and layers:
                row.values["_layers"] = layers
            if config.metrics == "all":
                if live is None:
                    row.attempt("build", lambda: {"_live": build_live(spec, config)})
                    live = row.values.pop("_live", None)
                if live is not None:
                    row.attempt("timing", lambda: measure_speed(spec, live, bs, counts, config, mode))
                    row.attempt("memory", lambda: measure_memory(spec, live, bs, config, mode))
                    if "_layers" in row.values:
                        row.attempt("layer_times", lambda: {"_layer_times": _layer_times(spec, live, bs, config)})
                        _merge_layer_times(layers, row.values.pop("_layer_times", {}))
            yield row.finish(_context(config, mode))


def profile_model_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The child's half of --isolate: one model's rows (convbench.isolate), under the settings it applies itself."""
    config = from_payload(ProfileConfig, payload["config"], isolate=False)
    spec = resolve_models(payload["arch"], config.input_size)[0]
    cache = CountCache()
    try:
        with settings.applied(config):
            for row in _model_rows(spec, config, cache, lambda stage, bs: send({"stage": stage, "key": bs})):
                send({"row": row})
    finally:
        cache.save()


def _isolated_model_rows(spec: ModelSpec, config: ProfileConfig) -> Iterator[dict[str, Any]]:
    """One model's rows from a child process; a child that dies leaves error rows that say how and where."""
    child = Child("convbench.runner:profile_model_child", {"config": to_payload(config), "arch": spec.name}, config.timeout)
    done: set[int] = set()
    for row in child.rows():
        done.add(row["batch_size"])
        yield row
    missing = [bs for bs in config.batch_sizes if bs not in done]
    if missing and child.end.ok:  # a child that exits cleanly owes every row
        child.end.how = "child exited without finishing its rows"
    for bs in missing:
        died_here = child.end.key == bs or (child.end.key is None and bs == missing[0])
        yield _error_row(spec, config, bs, child.end.describe() if died_here else f"not run: {child.end.describe()}")


# What a forked counting worker needs, set by the parent just before it forks (fork copies it).
_FORKED: dict[str, Any] = {}


def _count_in_worker(index: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    spec, config, cache = (_FORKED[k] for k in ("specs", "config", "cache"))
    rows = list(_model_rows(spec[index], config, cache))
    return rows, cache.take_new()


def _counting_workers(config: ProfileConfig, models: int) -> int:
    """Static sweeps are pure counting: on Linux, fork a worker per core (torch is imported, nothing has run yet
    on the CPU, so fork is safe), each counting its share of the models. Measured on the 2-core CI machine,
    the 37-model cold sweep: 9.2-9.8 s in one process."""
    # Never on CUDA: the parent has initialised CUDA (the environment reads the GPU), and a forked child cannot.
    if config.metrics != "static" or config.isolated or not sys.platform.startswith("linux") or models < 4 \
            or config.device.startswith("cuda"):
        return 1
    # Shards side by side on one host (torchrun) share its cores.
    cores = len(os.sched_getaffinity(0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(cores, models, 8))


def _parallel_model_rows(specs: list[ModelSpec], config: ProfileConfig, cache: CountCache,
                         workers: int) -> Iterator[dict[str, Any]]:
    import multiprocessing
    _FORKED.update(specs=specs, config=config, cache=cache)
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,))
    try:
        for rows, entries in pool.imap(_count_in_worker, range(len(specs))):  # in order, as each model finishes
            cache.merge(entries)
            yield from rows
        pool.close()
    finally:
        pool.terminate()
        _FORKED.clear()


def unit_cost(spec: ModelSpec, config: ProfileConfig, cache: CountCache) -> float:
    """A model's share of a sweep: MACs x images x modes (its exact count, cached; a model that cannot be counted
    weighs as one image of one MAC, and fails in its own shard). A static sweep only counts, which takes about as
    long for every model: each weighs one there (and no shard counts the whole zoo just to deal it)."""
    if config.metrics == "static":
        return 1.0
    key = f"{spec.name}@{spec.input_size}:counts:dispatch"
    try:
        macs = cache.get_or_compute(key, lambda: model_counts(spec))["macs"] if spec.family != "custom" else \
            model_counts(spec)["macs"]
    except Exception:
        macs = 1
    return float(macs) * sum(config.batch_sizes) * len(config.run_modes)


def run_profile(config: ProfileConfig, on_row: OnRow | None = None, on_start: Callable[[int], None] | None = None) -> ProfileRun:
    """Measure every (model, batch size) of the config; write rows to config.out as they finish."""
    import pandas as pd
    specs = resolve_models(config.arch, config.input_size)
    out = outdirs.claim(Path(config.out), config.overwrite) if config.out is not None else None
    cache = CountCache()
    names = [s.name for s in specs]
    shard = Shard(*config.shard) if config.shard else None
    specs = mine(specs, lambda s: unit_cost(s, config, cache), shard)
    env = {**environment(config.device), "config": config.__dict__, "columns": PROFILE_COLUMNS,
           "sweep": sweep_record("profile", config, names, [s.name for s in specs], shard)}
    if config.metrics == "all" and config.ceiling:
        env["ceiling"] = ceiling.record(config)  # before any row, so that every measuring process finds it cached
    layer_rows: list[dict[str, Any]] = []
    if on_start:
        on_start(len(specs) * len(config.batch_sizes))
    try:
        with ResultSink(out, "profile", PROFILE_COLUMNS, config.formats, env, on_row, READER_COLUMNS) as sink, \
                settings.applied(config), peers.measuring():
            workers = _counting_workers(config, len(specs))
            if workers > 1:
                rows: Iterator[dict[str, Any]] = _parallel_model_rows(specs, config, cache, workers)
            else:
                rows = (row for spec in specs for row in (_isolated_model_rows(spec, config) if config.isolated
                                                          else _model_rows(spec, config, cache)))
            for row in rows:
                layer_rows.extend(row.pop("_layers", []))
                sink.add(row)
    finally:
        cache.save()
    if out is not None and config.by_layer:
        pd.DataFrame(layer_rows, columns=LAYER_COLUMNS).to_csv(out / "layers.csv", index=False)
    run = ProfileRun(config, sink.rows, layer_rows, sink.interrupted)
    return run

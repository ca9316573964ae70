"""`convbench profile`: one row per model, batch size and mode: counts, saved bytes, memory peaks, latency and
throughput. A plan for the sweep runner (convbench.run.sweep), whose unit is a model.

Model-level counts (params, MACs, activations) are taken once per model from a meta-device build and one
counted forward on the meta device; batch-level figures (saved bytes, timing, memory) once per row."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from convbench import children
from convbench.errors import RowFailure, UserError, error_text
from convbench.measure import ceiling, clock, counted_forward, device_time, host_load, instructions, layer_times, memory, roofline, timing
from convbench.measure.cache import CountCache
from convbench.measure.counts import ZEROS, model_counts
from convbench.measure.device import DTYPES, autocast, input_batch
from convbench.results.schema import PROFILE_COLUMNS, PROFILE_READER_COLUMNS
from convbench.run import modes, rows, sweep
from convbench.run.config import ProfileConfig
from convbench.run.rows import Builder, Measured, Row
from convbench.zoo.specs import ModelSpec, resolve_models

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class LiveModel:
    """The real model on the device, built once per model and reused across batch sizes and modes (compiled
    modes compile it afresh for each row: convbench.run.modes.compiled)."""
    module: nn.Module

    def forward(self, mode: str, x: torch.Tensor, config: ProfileConfig) -> Callable[[], Any]:
        return modes.prepare(self.module, x, mode, torch.device(config.device), DTYPES[config.dtype],
                             warmup=max(config.warmup, 1))


def build_live(spec: ModelSpec, config: ProfileConfig) -> LiveModel:
    module = spec.build("cpu").to(torch.device(config.device)).eval()
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return LiveModel(module)


def _input(spec: ModelSpec, batch_size: int, config: ProfileConfig) -> torch.Tensor:
    return input_batch(batch_size, spec.input_shape, config.device, config.channels_last)


def measure_speed(spec: ModelSpec, live: LiveModel, batch_size: int, counts: dict[str, Any], config: ProfileConfig,
                  mode: str = "eager") -> Measured:
    device = torch.device(config.device)
    live.module.eval()
    forward = live.forward(mode, _input(spec, batch_size, config), config)
    start = host_load.snapshot()
    samples = clock.samples(forward, device, config.warmup, config.iters, config.min_time)
    row: dict[str, Any] = {**timing.summarize(samples), **host_load.load_columns(start, host_load.snapshot())}
    seconds = row["latency_ms_p50"] / 1e3
    row["throughput_img_s"] = batch_size / seconds
    row["achieved_tflops"] = 2 * counts["macs"] * batch_size / seconds / 1e12
    flops_per_byte = roofline.intensity(counts["macs"], batch_size, counts["param_bytes"], counts["acts"], config.dtype)
    peak = ceiling.cached(config.device)
    row.update(roofline.row_columns(row["achieved_tflops"], flops_per_byte, config.dtype, peak))
    device_note = None
    if device.type == "cuda":
        columns = device_time.device_columns(forward, device, row["latency_ms_p50"])
        device_note = columns.pop("note", None)
        row.update(columns)
    notes = [device_note, roofline.above_peak(row.get("pct_peak"), "% peak", peak)]
    return Measured(row, note="; ".join(n for n in notes if n) or None, samples=[{"latency_ms": v} for v in samples])


def measure_memory(spec: ModelSpec, live: LiveModel, batch_size: int, config: ProfileConfig, mode: str = "eager") -> Measured:
    """Memory in its own pass, after timing and never inside the timed loop; a failure here costs the row its
    memory columns only."""
    if config.device.startswith("cuda"):
        peaks = memory.peaks(live.module, _input(spec, batch_size, config), DTYPES[config.dtype])
    elif config.cpu_memory:
        peaks = memory.cpu_peaks_in_child(spec, batch_size, config.dtype, config.channels_last)
    else:
        return Measured(note="memory: CPU peaks not measured (cpu_memory off)")
    failed = peaks.pop("mem_note", None)
    # A compiled module's own training peak would cost a forward-and-backward compilation per row (minutes).
    note = f"memory: peaks are of the eager forward, not the {mode} one" if mode != "eager" else None
    return Measured(peaks, note=note, failure=failed)


def _layer_times(spec: ModelSpec, live: LiveModel, batch_size: int, config: ProfileConfig) -> dict[str, dict[str, float]]:
    x = _input(spec, batch_size, config)

    def forward() -> Any:
        with torch.inference_mode(), autocast(torch.device(config.device).type, DTYPES[config.dtype]):
            return live.module(x)

    trace = Path(config.out) / f"trace_{_file_safe(spec.name)}_b{batch_size}.json" if config.out is not None else None
    return layer_times.module_times(live.module.eval(), forward, torch.device(config.device), trace_path=trace)


def measure_instructions(spec: ModelSpec, batch_size: int, counts: dict[str, Any], config: ProfileConfig) -> dict[str, Any]:
    """Instructions per image of one forward, counted by callgrind in a process of its own."""
    try:
        per_image = counted_forward.instructions_per_image(spec, batch_size, config.dtype, config.channels_last)
    except instructions.CountFailed as exc:
        raise RowFailure(str(exc)) from None
    macs = counts.get("macs")
    return {"instructions": per_image, "instructions_per_mac": per_image / macs if macs else float("nan")}


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]


def _counted(spec: ModelSpec, config: ProfileConfig) -> dict[str, Any]:
    """model_counts, its failure said in words before the count cache keeps it, so that a failure reads the same
    from the cache as when it happened."""
    try:
        return model_counts(spec, config.by_layer, config.counter)
    except (RowFailure, UserError):
        raise
    except Exception as exc:
        raise RowFailure(f"counting failed: {error_text(exc)}") from exc


# What a forked counting worker needs, set by the parent just before it forks (fork copies it).
_FORKED: dict[str, Any] = {}


def _counting_worker_start() -> None:
    torch.set_num_threads(1)
    children.forked_worker()
    children.die_with_parent()


def _count_in_worker(index: int) -> tuple[list[Row], dict[str, Any]]:
    plan, units = _FORKED["plan"], _FORKED["units"]
    found = list(plan.owed_rows(units[index], lambda event: None))
    return found, plan.cache.take_new()


class ProfilePlan(sweep.Plan[ModelSpec]):
    kind = "profile"
    unit_column = "model"
    columns = PROFILE_COLUMNS
    reader_columns = PROFILE_READER_COLUMNS
    config_class = ProfileConfig

    def __init__(self, config: ProfileConfig) -> None:
        super().__init__(config)
        self.cache = CountCache()

    def units(self) -> list[ModelSpec]:
        return resolve_models(self.config.arch, self.config.input_size, self.config.output,
                              all_matching=self.config.all_matching, refused=self.refused)

    def name(self, spec: ModelSpec) -> str:
        return spec.name

    def cost(self, spec: ModelSpec) -> float:
        """A model's share of a sweep: MACs x images x modes (its exact count, cached; a model that cannot be
        counted weighs as one image of one MAC, and fails in its own shard). A static sweep only counts, which takes
        about as long for every model: each weighs one there (and no shard counts the whole zoo just to deal it)."""
        config = self.config
        if config.metrics == "static":
            return 1.0
        try:
            macs = self._cached(spec, "counts:dispatch", lambda: model_counts(spec))["macs"]
        except Exception:
            macs = 1
        return float(macs) * sum(config.batch_sizes) * len(config.run_modes)

    @classmethod
    def keys(cls, config: ProfileConfig, name: str) -> list[sweep.Key]:
        return [{"model": name, "batch_size": bs, "mode": m} for bs in config.batch_sizes for m in config.row_modes]

    def describe(self, spec: ModelSpec, key: sweep.Key) -> dict[str, Any]:
        return {"model": spec.name, "family": spec.family, "input_size": spec.input_size,
                "input_shape": "x".join(map(str, spec.input_shape)), "input_from": spec.shape_from, **key}

    @property
    def wants_ceiling(self) -> bool:
        return self.config.metrics == "all" and self.config.ceiling

    def _cached(self, spec: ModelSpec, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        # A user's module:function is never cached: its source is not part of the cache's key.
        if spec.cache_name is None or self.config.by_layer:
            return compute()
        shape = spec.input_size if spec.input_shape[0] == 3 and spec.input_shape[1] == spec.input_shape[2] else \
            "x".join(map(str, spec.input_shape))
        return self.cache.get_or_compute(f"{spec.cache_name}@{shape}:{key}", compute)

    def measure(self, spec: ModelSpec, on_stage: rows.OnStage | None, on_event: sweep.OnEvent) -> Iterator[Row]:
        config = self.config
        if on_stage:
            on_stage("counting", config.batch_sizes[0])
        try:
            counts = self._cached(spec, f"counts:{config.counter}", lambda: _counted(spec, config))
            counts["counter"] = config.counter
        except UserError:
            raise
        except Exception as exc:  # a model that cannot be built or traced still gets its rows
            for key in self.keys(config, spec.name):
                yield rows.failure(self.describe(spec, key), config, exc, "compile" in key["mode"])
            return
        counts = dict(counts)
        layers = counts.pop("layers", [])
        on_zeros = counts.pop(ZEROS, None)  # a forward that reads its own values: counted, but on zeros
        live: LiveModel | None = None
        device = torch.device(config.device).type
        for bs in config.batch_sizes:
            # Saved bytes depend on the batch, not on the mode: counted once, shared by the batch's rows.
            saved = Builder({}, on_stage=on_stage, stage_key=bs)
            saved.attempt("saved_bytes", lambda: self._cached(spec, f"saved:{bs}:{config.dtype}:{device}",
                                                              lambda: memory.saved_bytes(spec, bs, config.dtype, config.device)))
            if not config.saved_asked:
                saved.excuse("saved_bytes", f"not asked for: a counts-only run at the default batch (--batch-size "
                                            f"{max(2, bs)} counts them)")
            for mode in config.row_modes:
                key = {"model": spec.name, "batch_size": bs, "mode": mode}
                row = Builder({**self.describe(spec, key), **counts}, ("build", "timing"), on_stage, bs)
                row.inherit(saved)
                if on_zeros:
                    row.failures.append(("counts", rows.ERROR, on_zeros))
                if config.metrics == "instructions":
                    row.attempt("instructions", lambda: measure_instructions(spec, bs, counts, config))
                if config.metrics == "all":
                    if live is None:
                        live = row.obtain("build", lambda: build_live(spec, config))
                    if live is not None:
                        row.attempt("timing", lambda: measure_speed(spec, live, bs, counts, config, mode))
                        row.attempt("memory", lambda: measure_memory(spec, live, bs, config, mode))
                        if layers and bs == config.batch_sizes[0] and mode == config.row_modes[0]:
                            times = row.obtain("layer_times", lambda: _layer_times(spec, live, bs, config))
                            for layer in layers:
                                layer.update((times or {}).get(layer["module"], {}))
                if layers and bs == config.batch_sizes[0] and mode == config.row_modes[0]:
                    row.layers = layers
                yield row.finish(config, "compile" in mode)

    def rows(self, units: list[ModelSpec], on_event: sweep.OnEvent) -> Iterator[Row]:
        workers = self._counting_workers(len(units))
        if workers <= 1:
            yield from super().rows(units, on_event)
            return
        import multiprocessing
        _FORKED.update(plan=self, units=units)
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_counting_worker_start)
        try:
            for found, entries in pool.imap(_count_in_worker, range(len(units))):  # in order, as each model finishes
                self.cache.merge(entries)
                yield from found
            pool.close()
            pool.join()  # the workers end on their own: no signal needed
        finally:
            pool.terminate()
            _FORKED.clear()

    def _counting_workers(self, models: int) -> int:
        """Static sweeps are pure counting: on Linux, fork a worker per core (torch is imported, nothing has run yet
        on the CPU, so fork is safe), each counting its share of the models. Measured on the 2-core CI machine,
        the 37-model cold sweep: 9.2-9.8 s in one process."""
        config = self.config
        # Never on CUDA: the parent has initialised CUDA (the environment reads the GPU), and a forked child cannot.
        if config.metrics != "static" or config.isolated or not sys.platform.startswith("linux") or models < 4 \
                or config.device.startswith("cuda"):
            return 1
        # Shards side by side on one host (torchrun) share its cores.
        cores = len(os.sched_getaffinity(0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(1, min(cores, models, 8))

    def close(self) -> None:
        self.cache.save()


def run_profile(config: ProfileConfig, on_row: sweep.OnRow | None = None,
                on_start: Callable[[int], None] | None = None) -> sweep.SweepResult:
    """Measure every (model, batch size, mode) of the config; write rows to config.out as they finish."""
    return sweep.run(ProfilePlan(config), on_row=on_row, on_start=on_start)


def profile(arch: str = "all", device: str = "cpu", batch_sizes=(1,), dtype: str = "fp32", metrics: str = "all",
            out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """One row per (model, batch size, mode) as a DataFrame; see convbench.results.schema.PROFILE_COLUMNS for the
    columns and units. Further options are ProfileConfig's fields: channels_last, modes, cudnn_benchmark, warmup,
    iters, min_time, input_size, formats, by_layer, cpu_memory, ..."""
    config = ProfileConfig(arch=arch, device=device, batch_sizes=tuple(batch_sizes), dtype=dtype, metrics=metrics,
                           out=Path(out) if out is not None else None, **options)
    # A caller gets no closing lines: a name that resolves to no model is an error here, before anything is measured
    resolve_models(config.arch, config.input_size, config.output, all_matching=config.all_matching)
    return run_profile(config).frame



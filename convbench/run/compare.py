"""`convbench compare NAME`: claimed vs counted vs measured, per case and variant. A plan for the sweep runner
(convbench.run.sweep), whose unit is a case: a baseline and its variants, at every batch size.

Counts use profile's measurers (MACs and activations, exact saved bytes); latency ratios come from paired
interleaved runs against the case's baseline; the verdict (convbench.run.verdicts) says how much of the
MAC saving the measured time realises."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from convbench.run.verdicts import peak_clause, verdict
from convbench.measure import ceiling, complexity, device_time, host_load, memory
from convbench.measure.device import DTYPES, input_batch
from convbench import stats
from convbench.measure.paired import drift, drift_note, median_ratio, paired_times
from convbench.measure.roofline import above_peak, share_of_peak
from convbench.results.schema import COMPARE_COLUMNS, COMPARE_READER_COLUMNS
from convbench.run import modes, rows, settings, sweep
from convbench.run.config import CompareConfig
from convbench.run.rows import Builder, Row
from convbench.zoo.blocks.resnext import GroupedBottleneck, load_from_grouped
from convbench.zoo.comparisons import CompareCase, Variant, get_cases

if TYPE_CHECKING:
    import pandas as pd

CPU_MEMORY_NOTE = "compare measures no CPU peak memory (saved_act_ratio, exact, is the memory figure)"


def _ratio(a: Any, b: Any) -> float:
    try:
        return float(b) / float(a) if float(a) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _shape_for(case: CompareCase, config: CompareConfig) -> tuple[int, int, int]:
    return case.shape if case.whole_network or config.shape is None else config.shape


def _counts(build: Callable[[], nn.Module], shape: tuple[int, int, int], batch_size: int, counter: str) -> dict[str, Any]:
    with torch.device("meta"):
        meta = build()
    traced = complexity.count(meta, (1, *shape), counter)
    with torch.device("meta"):
        saved = memory.count_saved_bytes(build(), torch.zeros(batch_size, *shape, device="meta"))
    return {"params": complexity.count_params(meta), "macs": traced["macs"], "acts": traced["acts"],
            "saved_act_bytes": saved["saved_act_bytes"], **({"note": traced["note"]} if traced.get("note") else {})}


def _max_abs_diff(case: CompareCase, variants: dict[str, nn.Module], x: torch.Tensor) -> dict[str, float]:
    """For the ResNeXt forms: map (c)'s weights into (a) and (b) and compare outputs. In full fp32 on every device
    (TF32 off for the check): with TF32 a GPU's convolutions round to 10 bits of mantissa and the forms would
    differ by about 1e-2, which says nothing about whether they compute the same function."""
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


def _measure(case: CompareCase, modules: dict[str, nn.Module], x: torch.Tensor, found: list[Builder], config: CompareConfig) -> None:
    device = torch.device(config.device)
    dtype = DTYPES[config.dtype]
    forwards = {name: modes.prepare(m, x, config.mode, device, dtype, config.warmup) for name, m in modules.items()}
    base_name = case.variants[0].name
    base_times: list[float] = []
    start = host_load.snapshot()
    for row in found:
        values = row.values
        name = values["variant"]
        if name == base_name:
            continue
        pairs = paired_times(forwards[base_name], forwards[name], device, config.warmup, config.pairs)
        mine, theirs = [b for _, b in pairs], [a for a, _ in pairs]
        base_times += theirs
        ratio, lo, hi = median_ratio([b / a for a, b in pairs])
        values.update(measured_ratio=ratio, ratio_ci_low=lo, ratio_ci_high=hi, pairs=len(pairs),
                      latency_ms_p50=stats.median(mine), baseline_ms_p50=stats.median(theirs), drift=drift(mine))
        row.samples = [{"baseline_ms": a, "latency_ms": b} for a, b in pairs]
        notes = [drift_note("variant", mine), drift_note("baseline", theirs)]
        values["note"] = "; ".join(n for n in notes if n) or None
    load = host_load.window_columns(start)  # the case's whole timed window: every variant's pairs
    for row in found:
        row.values.update(load)
    base = found[0].values
    base.update(measured_ratio=1.0, ratio_ci_low=1.0, ratio_ci_high=1.0, pairs=len(base_times),
                latency_ms_p50=stats.median(base_times))
    found[0].samples = [{"latency_ms": a} for a in base_times]
    for row in found:
        values = row.values
        if device.type == "cuda":
            columns = device_time.device_columns(forwards[values["variant"]], device, values["latency_ms_p50"])
            _add_note(values, columns.pop("note", None))
            values.update(columns)
            values["peak_mem_infer_bytes"] = memory.peaks(modules[values["variant"]], x, dtype, train=False)["peak_mem_infer_bytes"]
        else:  # empty with its reason; on screen the CLI says it once, under the tables
            _add_note(values, CPU_MEMORY_NOTE)


def _add_note(values: dict[str, Any], note: str | None) -> None:
    values["note"] = "; ".join(filter(None, [values.get("note"), note])) or None


class ComparePlan(sweep.Plan[CompareCase]):
    kind = "compare"
    unit_column = "case"
    columns = COMPARE_COLUMNS
    reader_columns = COMPARE_READER_COLUMNS
    config_class = CompareConfig

    def units(self) -> list[CompareCase]:
        return get_cases(self.config.name, self.config.shape, self.config.claims, self.config.output)

    def name(self, case: CompareCase) -> str:
        return case.name

    def cost(self, case: CompareCase) -> float:
        """A case's share of a sweep: its variants' MACs x images (counted on the meta device)."""
        shape = _shape_for(case, self.config)
        total = 0
        for v in case.variants:
            try:
                with torch.device("meta"):
                    total += complexity.count(v.build(shape[0]), (1, *shape))["macs"]
            except Exception:
                total += 1
        return float(total) * sum(self.config.batch_sizes)

    @classmethod
    def keys(cls, config: CompareConfig, name: str) -> list[sweep.Key]:
        case = next((c for c in get_cases(config.name, config.shape, config.claims, config.output) if c.name == name), None)
        variants = [v.name for v in case.variants] if case else []
        return [{"case": name, "batch_size": bs, "variant": v} for bs in config.batch_sizes for v in variants]

    def describe(self, case: CompareCase, key: sweep.Key) -> dict[str, Any]:
        variant = next(v for v in case.variants if v.name == key["variant"])
        return self._variant_row(case, variant, key["batch_size"])

    def _variant_row(self, case: CompareCase, variant: Variant, bs: int) -> dict[str, Any]:
        return {"comparison": case.comparison, "case": case.name, "variant": variant.name,
                "baseline": case.variants[0].name, "claim": case.claim,
                "input_shape": "x".join(map(str, _shape_for(case, self.config))), "batch_size": bs,
                "mode": self.config.mode, "claimed_ratio": variant.claimed_ratio}

    def isolates(self, case: CompareCase) -> bool:
        return self.config.isolated and case.whole_network

    def measure(self, case: CompareCase, on_stage: rows.OnStage | None, on_event: sweep.OnEvent) -> Iterator[Row]:
        for bs in self.config.batch_sizes:
            if on_stage:
                on_stage("measuring", bs)
            yield from self._case_rows(case, bs)

    def _case_rows(self, case: CompareCase, bs: int) -> list[Row]:
        config = self.config
        shape = _shape_for(case, config)
        channels = shape[0]
        device = torch.device(config.device)
        found = []
        for v in case.variants:
            row = Builder(self._variant_row(case, v, bs), essential=("counting", "timing"))
            row.attempt("counting", lambda: {**_counts(lambda: v.build(channels), shape, bs, config.counter),
                                             "counter": config.counter})
            found.append(row)
        modules: dict[str, nn.Module] = {}
        try:
            for v in case.variants:
                module = v.build(channels).to(device).eval()
                modules[v.name] = module.to(memory_format=torch.channels_last) if config.channels_last else module
            x = input_batch(bs, shape, device, config.channels_last)
            _measure(case, modules, x, found, config)
            diffs = _max_abs_diff(case, modules, x)
            for row in found:
                if row.values["variant"] in diffs:
                    row.values["max_abs_diff"] = diffs[row.values["variant"]]
        except (Exception, SystemExit) as exc:  # the case's pairs are shared: a failure is every variant's
            for row in found:
                if not row.essential_failed:
                    row.fail("timing", exc)
        self._judge(found, bs)
        return [row.finish(config, config.compiled) for row in found]

    def _judge(self, found: list[Builder], bs: int) -> None:
        base = found[0].values
        peak = ceiling.cached(self.config.device)
        for row in found:
            row.values.update(share_of_peak(row.values, bs, self.config.dtype, peak))
            _add_note(row.values, above_peak(row.values.get("pct_peak"), "% peak", peak))
        for row in found:
            values = row.values
            values["counted_ratio"] = _ratio(base.get("macs"), values.get("macs"))
            values["params_ratio"] = _ratio(base.get("params"), values.get("params"))
            values["saved_act_ratio"] = _ratio(base.get("saved_act_bytes"), values.get("saved_act_bytes"))
            values["peak_mem_ratio"] = _ratio(base.get("peak_mem_infer_bytes"), values.get("peak_mem_infer_bytes"))
            values["device_ratio"] = _ratio(base.get("device_ms"), values.get("device_ms"))
            busy = [b for b in (base.get("gpu_busy"), values.get("gpu_busy")) if b is not None]
            values["saving_realized"], values["verdict"] = verdict(
                values["counted_ratio"], values.get("measured_ratio", float("nan")), values["device_ratio"],
                min(busy) if busy else None, (values.get("ratio_ci_low"), values.get("ratio_ci_high")),
                values.get("claimed_ratio"))
            if values["variant"] == base["variant"]:
                values["verdict"] = "baseline"
            elif values["verdict"]:
                values["verdict"] += peak_clause(values, base)


def run_compare(config: CompareConfig, on_row: sweep.OnRow | None = None) -> sweep.SweepResult:
    return sweep.run(ComparePlan(config), on_row=on_row)


def compare(name: str = "all", device: str = "cpu", batch_sizes=(1,), out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """Library call behind `convbench compare`, as a DataFrame; options are CompareConfig's fields."""
    config = CompareConfig(name=name, device=device, batch_sizes=tuple(batch_sizes), out=Path(out) if out else None, **options)
    return run_compare(config).frame

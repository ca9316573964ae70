"""Where a measured figure stands against the machine's measured ceilings (convbench.measure.ceiling): its share
of peak compute, its estimated arithmetic intensity, and which ceiling bounds it there."""
from __future__ import annotations

import math
from typing import Any

from convbench.measure.ceiling import Ceiling

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


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


def share_of_peak(row: dict[str, Any], batch: int, dtype: str, peak: Ceiling | None) -> dict[str, Any]:
    """The row's achieved FLOP/s as a share of this machine's measured peak for the dtype."""
    tflops = peak.tflops(dtype) if peak else None
    latency, macs = row.get("latency_ms_p50"), row.get("macs")
    if not tflops or not latency or macs is None or math.isnan(latency):
        return {}
    return {"pct_peak": 2 * macs * batch / (latency / 1e3) / 1e12 / tflops}


def model_flops_utilisation(flops: int | None, images_per_s: float, dtype: str, peak: Ceiling | None) -> dict[str, Any]:
    """MFU: achieved training FLOP/s over this machine's measured peak for the dtype (convbench ceiling)."""
    tflops = peak.tflops(dtype) if peak else None
    if not flops or not tflops or not math.isfinite(images_per_s):
        return {}
    return {"mfu": flops * images_per_s / (tflops * 1e12)}


def above_peak(share: float | None, what: str, ceiling: Ceiling | None) -> str | None:
    """A note for a share of peak above 100%, which no measured figure can honestly be: the ceiling it is a share of
    is too low, measured while the machine was busy or under other settings; never a plain figure on its own."""
    if share is None or not share > 1 or ceiling is None:
        return None
    why = f"measured while other processes used {ceiling.host_busy:.0%} of the CPU" if ceiling.busy else \
        f"measured {ceiling.measured or 'at an unknown time'}, is stale or was measured under load"
    return (f"{what} {share:.0%} is above this machine's measured peak: the ceiling, {why}; "
            "run `convbench ceiling --refresh` on a quiet machine")

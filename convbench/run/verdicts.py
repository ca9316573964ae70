"""What a comparison's figures say, in words: how much of a counted MAC saving the measured time realises, where
the time is the host launching kernels rather than the design, and where a variant runs at a far lower share of
the machine's peak than its baseline."""
from __future__ import annotations

import math
from typing import Any

from convbench.measure.device_time import LAUNCH_BOUND
from convbench.units import percent

# MAC ratios within 5% of 1 are "equal MACs": ResNeXt's Table 2 keeps each width's complexity within about 3% of
# the 1x64d block (8x14d is 1.026x here), which its authors call the same.
EQUAL_MACS = 0.05
# A variant that saves MACs but runs at under this share of the baseline's share of peak is said to (grouped
# convolution is the classic case: a thirty-second of the MACs, at a far lower share of what the machine can do).
LOWER_SHARE = 0.8


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


def _no_macs(measured: float, what: str, claimed: float | None) -> tuple[float, str]:
    """Pooling and normalisation hold no MACs: the verdict rests on the time, against the claimed work where the
    case has a figure for it."""
    text = f"no MACs on either side (pooling, normalisation): {measured:.2f}x the {what}"
    if claimed is not None and not math.isnan(claimed):
        text += f" for the claimed {claimed:.2f}x of the work"
    return float("nan"), text


def verdict(counted: float, measured: float, device_ratio: float | None = None, gpu_busy: float | None = None,
            interval: tuple[float | None, float | None] = (None, None), claimed: float | None = None) -> tuple[float, str]:
    """How much of the counted MAC change shows up in the measured time. Where the measured ratio's 95% interval
    spans 1, no difference in time was measured at this precision, and the verdict says that and no more. Where the
    baseline or the variant is launch-bound (`gpu_busy`, the lower of the two, below LAUNCH_BOUND), the latency
    measures the host launching kernels, not the design: the verdict says so and judges on the GPU's own time, the
    device-time ratio."""
    if measured is None or math.isnan(measured):
        return float("nan"), ""
    judge = (lambda c, m, what: _no_macs(m, what, claimed)) if counted is None or math.isnan(counted) else _judge
    bound = gpu_busy is not None and not math.isnan(gpu_busy) and gpu_busy < LAUNCH_BOUND
    if bound and device_ratio is not None and not math.isnan(device_ratio):
        realized, text = judge(counted, device_ratio, "device time")
        return realized, f"launch-bound: GPU busy {gpu_busy:.0%}; device-time ratio {device_ratio:.2f}: {text}"
    low, high = interval
    if low is not None and high is not None and not math.isnan(low) and low <= 1 <= high and (low, high) != (1.0, 1.0):
        macs = ("no MACs on either side" if counted is None or math.isnan(counted) else
                f"equal MACs (within {EQUAL_MACS:.0%})" if abs(counted - 1) <= EQUAL_MACS else f"{counted:.2f}x the MACs")
        return float("nan"), (f"no difference measurable at this precision: {measured:.2f}x the time, 95% CI "
                              f"{low:.2f}-{high:.2f} spans 1 ({macs}); more --pairs narrow it")
    return judge(counted, measured, "time")


def peak_clause(row: dict[str, Any], base: dict[str, Any]) -> str:
    """'; it runs at 4.1% of peak, the baseline at 58%' where a variant that saves MACs uses far less of the machine;
    never from a share above 100%, which says the ceiling is wrong, not the design (the row's note says why)."""
    mine, theirs = row.get("pct_peak"), base.get("pct_peak")
    if mine is None or theirs is None or max(mine, theirs) > 1:
        return ""
    if not row["counted_ratio"] < 1 - EQUAL_MACS or not mine < LOWER_SHARE * theirs:
        return ""
    return f"; it runs at {percent(mine)} of peak, the baseline at {percent(theirs)}"

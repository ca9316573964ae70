"""`convbench.profile(...)`: the library call behind `convbench profile`, for notebooks."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable


from convbench.config import ProfileConfig
from convbench.runner import run_profile

if TYPE_CHECKING:
    import pandas as pd


def profile(arch: str = "all", device: str = "cpu", batch_sizes: Iterable[int] = (1,), dtype: str = "fp32",
            metrics: str = "all", out: str | Path | None = None, **options) -> pd.DataFrame:
    """One row per (model, batch size); see convbench.results.PROFILE_COLUMNS for the columns and units.

    Further options are ProfileConfig's fields: channels_last, compile, cudnn_benchmark, warmup, iters,
    min_time, input_size, formats, by_layer, cpu_memory."""
    config = ProfileConfig(arch=arch, device=device, batch_sizes=tuple(batch_sizes), dtype=dtype, metrics=metrics,
                           out=Path(out) if out is not None else None, **options)
    return run_profile(config).frame

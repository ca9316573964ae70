"""The zoo as data: one dict per model, what `convbench list` prints and `--json` emits."""
from __future__ import annotations

from typing import Any

from convbench.measure.complexity import static_summary
from convbench.zoo.registry import get_model_info, list_models


def zoo_table(pattern: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in list_models(pattern):
        info = get_model_info(name)
        counts = static_summary(name)
        rows.append({
            "name": name,
            "family": info.family,
            "input_size": info.input_size,
            "params": counts["params"],
            "macs": counts["macs"],
            "acts": counts["acts"],
            "paper": info.paper,
            "notes": info.notes,
        })
    return rows

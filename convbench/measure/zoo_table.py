"""The zoo as data: one dict per model, what `convbench list` prints and `--json` emits; the installed timm's and
torchvision's models too (`convbench list timm:convnext_*`), counted at their own input sizes."""
from __future__ import annotations

from typing import Any

from convbench.errors import RowFailure, error_text
from convbench.lists import parse_list
from convbench.measure.complexity import static_summary
from convbench.zoo import libraries
from convbench.zoo.registry import get_model_info, list_models


def zoo_table(pattern: str | None = None, all_matching: bool = False) -> list[dict[str, Any]]:
    if pattern is not None and pattern.strip() and any(libraries.library_of(p) for p in parse_list(pattern, "pattern")):
        return library_table(pattern, all_matching)
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


def library_table(pattern: str, all_matching: bool = False) -> list[dict[str, Any]]:
    """Every model the pattern names (zoo or library), counted on the meta device at its own input; a model that
    cannot be counted here keeps its row, with why."""
    from convbench.measure.counts import model_counts
    from convbench.zoo.specs import resolve_models
    rows = []
    for spec in resolve_models(pattern, all_matching=all_matching):
        row: dict[str, Any] = {"name": spec.name, "family": spec.family, "input_size": spec.input_size,
                               "input_shape": "x".join(map(str, spec.input_shape)), "input_from": spec.shape_from,
                               "params": None, "macs": None, "acts": None, "error": None}
        try:
            counts = model_counts(spec)
            row.update(params=counts["params"], macs=counts["macs"], acts=counts["acts"])
        except Exception as exc:  # one model the counter cannot run is said on its row, the others still listed
            row["error"] = str(exc) if isinstance(exc, RowFailure) else error_text(exc)
        rows.append(row)
    return rows

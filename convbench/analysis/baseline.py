"""The deterministic regression gate: exact params, MACs, activations and saved bytes of every zoo model,
held against a committed baseline. `convbench baseline` checks; `convbench baseline --update` accepts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convbench.measure.memory import saved_bytes
from convbench.run.profile import model_counts
from convbench.zoo.specs import resolve_models

DEFAULT_FILE = Path("results/baseline/static.json")
# Batch 2, not 1: a training forward at batch 1 is impossible for nets whose BN sees a 1x1 grid (Inception v3's aux head).
SAVED_BATCH = 2
METRICS = ("params", "macs", "acts", "saved_bytes", "saved_act_bytes")


def compute_static(pattern: str = "all") -> dict[str, dict[str, int]]:
    """Counted fresh every time (no cache): a gate must not check a cache against itself."""
    result = {}
    for spec in resolve_models(pattern):
        counts = model_counts(spec)
        result[spec.name] = {"input_size": spec.input_size, **{m: counts[m] for m in ("params", "macs", "acts")},
                             **saved_bytes(spec, SAVED_BATCH)}
    return result


def load(path: Path = DEFAULT_FILE) -> dict[str, dict[str, int]]:
    data = json.loads(Path(path).read_text())
    return data["models"]


def save(models: dict[str, dict[str, int]], path: Path = DEFAULT_FILE) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    payload = {"about": f"exact counts per model; saved bytes at batch {SAVED_BATCH}, fp32. Accept changes with "
                        "`convbench baseline --update`.", "models": models}
    Path(path).write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def diff(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    """(model, metric, old, new) for every difference, models added or gone included."""
    rows = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            rows.append((name, "(model)", "present", "gone"))
        elif name not in old:
            rows.append((name, "(model)", "absent", "new"))
        else:
            rows += [(name, m, old[name].get(m), new[name].get(m)) for m in ("input_size", *METRICS)
                     if old[name].get(m) != new[name].get(m)]
    return rows


def format_diff(rows: list[tuple[str, str, Any, Any]]) -> str:
    lines = [f"{'model':<22} {'metric':<16} {'old':>16} {'new':>16} {'change':>8}"]
    for model, metric, old, new in rows:
        change = f"{(new - old) / old:+.2%}" if isinstance(old, int) and isinstance(new, int) and old else ""
        lines.append(f"{model:<22} {metric:<16} {old!s:>16} {new!s:>16} {change:>8}")
    return "\n".join(lines)

"""The deterministic regression gate: exact params, MACs, activations and saved bytes of models, zoo or a user's
own (`package.module:function`), held against a committed baseline file. `convbench baseline` checks; `convbench
baseline --update` accepts, merging the models it counted into the file and leaving every other entry as it was.
The file is written whole or not at all (a temporary file renamed into place)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convbench import files
from convbench.errors import UserError
from convbench.measure.counts import model_counts
from convbench.measure.memory import saved_bytes
from convbench.results.folders import write_atomically
from convbench.run.rows import failure_text
from convbench.zoo.specs import Shape, resolve_models

DEFAULT_FILE = Path("results/baseline/static.json")
# Batch 2, not 1: a training forward at batch 1 is impossible for nets whose BN sees a 1x1 grid (Inception v3's aux head).
SAVED_BATCH = 2
METRICS = ("params", "macs", "acts", "saved_bytes", "saved_act_bytes")
ABOUT = (f"exact counts per model; saved bytes at batch {SAVED_BATCH}, fp32. Accept changes with "
         "`convbench baseline --update`.")


def compute_static(pattern: str = "all", input_size: int | Shape | None = None,
                   output: str | None = None, all_matching: bool = False) -> dict[str, dict[str, Any]]:
    """Counted fresh every time (no cache): a gate must not check a cache against itself. A model that cannot be
    built or counted is said as a sweep's row says it (its builder raised, returned no module, called sys.exit, a
    forward convbench cannot take), every such model in one line, with nothing written."""
    result, failed = {}, []
    for spec in resolve_models(pattern, input_size, output, all_matching=all_matching):
        try:
            counts = model_counts(spec)
            saved = saved_bytes(spec, SAVED_BATCH)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:
            failed.append(f"{spec.name}: {failure_text(exc)}")
            continue
        shape = {"input_size": spec.input_size} if spec.input_shape == (3, spec.input_size, spec.input_size) else \
            {"input_shape": list(spec.input_shape)}
        result[spec.name] = {**shape, **{m: counts[m] for m in ("params", "macs", "acts")}, **saved}
    if failed:
        raise UserError(f"cannot count {failed[0]}" + (f"; and {len(failed) - 1} more: "
                                                      + "; ".join(failed[1:]) if len(failed) > 1 else ""))
    return result


def _valid_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(m), int) and not isinstance(entry.get(m), bool)
                                           for m in METRICS)


def load(path: Path = DEFAULT_FILE) -> dict[str, dict[str, Any]]:
    """The models of a baseline file; one line on anything that is not a convbench baseline."""
    path = Path(path)
    try:
        data = files.load_json(path)
    except FileNotFoundError:
        raise UserError(f"no baseline at {path}; create it with `convbench baseline --update`") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read baseline {path}: {' '.join(str(exc).split())[:150]}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(k, str) and _valid_entry(v) for k, v in models.items()):
        raise UserError(f"{path} is not a convbench baseline (a 'models' table of exact counts per model); "
                        "write one with `convbench baseline --update --file ...`")
    return models


INSTRUCTIONS = "instructions"  # the table of instructions per call (the pytest plugin's convbench_instructions)


def _raw(path: Path) -> dict[str, Any]:
    try:
        data = files.load_json(Path(path))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read baseline {path}: {' '.join(str(exc).split())[:150]}") from None
    return data if isinstance(data, dict) else {}


def save(models: dict[str, dict[str, Any]], path: Path = DEFAULT_FILE,
         counted: dict[str, int] | None = None) -> None:
    """The file with these models (and these instruction counts; by default the file's own are kept)."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write baseline {path}: {exc.strerror or exc}") from None
    counted = load_instructions(path) if counted is None else counted
    data = {"about": ABOUT, "models": models, **({INSTRUCTIONS: counted} if counted else {})}
    write_atomically(Path(path), json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_instructions(path: Path = DEFAULT_FILE) -> dict[str, int]:
    """`case -> instructions per call` from a baseline file ({} where it holds none)."""
    table = _raw(path).get(INSTRUCTIONS, {})
    if not isinstance(table, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                              for v in table.values()):
        raise UserError(f"{path}: its '{INSTRUCTIONS}' table is not case -> instructions per call")
    return table


def update_instructions(entries: dict[str, int], path: Path = DEFAULT_FILE) -> None:
    """Merge instruction counts into the file, its models as they were."""
    models = load(path) if Path(path).exists() and "models" in _raw(path) else {}
    save(models, path, {**load_instructions(path), **entries})


def update(current: dict[str, dict[str, Any]], path: Path = DEFAULT_FILE) -> tuple[int, int]:
    """Merge `current` into the file (created when missing); returns (models written, models kept as they were)."""
    existing = load(path) if Path(path).exists() else {}
    merged = {**existing, **current}
    save(merged, path)
    return len(current), len(set(existing) - set(current))


def diff(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    """(model, metric, old, new) for every difference, models added or gone included."""
    rows = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            rows.append((name, "(model)", "present", "gone"))
        elif name not in old:
            rows.append((name, "(model)", "absent", "new"))
        else:
            rows += [(name, m, old[name].get(m), new[name].get(m)) for m in ("input_size", "input_shape", *METRICS)
                     if old[name].get(m) != new[name].get(m)]
    return rows


def format_diff(rows: list[tuple[str, str, Any, Any]]) -> str:
    width = max([22, *(len(model) for model, *_ in rows)])
    lines = [f"{'model':<{width}} {'metric':<16} {'old':>16} {'new':>16} {'change':>8}"]
    for model, metric, old, new in rows:
        change = f"{(new - old) / old:+.2%}" if isinstance(old, int) and isinstance(new, int) and old else ""
        lines.append(f"{model:<{width}} {metric:<16} {old!s:>16} {new!s:>16} {change:>8}")
    return "\n".join(lines)

"""`convbench merge`: one results folder from the shards of one sweep, rows in the order a single process would
have written them, after checking that the shards add up to the sweep that was asked for.

A shard folder is any folder whose env.json names its shard (OUT/shards/I-of-N, as profile, compare and train
write them when split); a folder given to merge may also hold them below it. Refused in one line, with nothing
written: shards of different sweeps (their fingerprints differ), a shard missing or given twice, a unit of the
sweep with no row where its shard did not say it died. A shard whose process died (its end.json says how, as
the torchrun supervisor writes it; or with --partial, any shard that stopped short) leaves error rows for what it
did not measure, and every row it finished."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convbench import files
from convbench.errors import UserError
from convbench.results import folders, reader
from convbench.measure.host import now
from convbench.results.schema import (
    COLUMNS,
    ENV_FILE,
    LAYERS_CSV,
    READER_COLUMNS,
    ROWS_FILE,
    STEPS_CSV,
)
from convbench.results.writers import write_csv, write_json, write_samples, write_table
from convbench.run import rows as row_kinds
from convbench.run.compare import ComparePlan
from convbench.run.config import from_payload
from convbench.run.profile import ProfilePlan
from convbench.run.sweep import matches
from convbench.run.train import TrainPlan

if TYPE_CHECKING:
    import pandas as pd


PLANS = {plan.kind: plan for plan in (ProfilePlan, ComparePlan, TrainPlan)}


@dataclass
class ShardFolder:
    path: Path
    env: dict[str, Any]

    @property
    def sweep(self) -> dict[str, Any]:
        return self.env["sweep"]

    @property
    def kind(self) -> str:
        return self.sweep["kind"]

    @property
    def index(self) -> int:
        return self.sweep["shard"]["index"]

    @property
    def count(self) -> int:
        return self.sweep["shard"]["count"]

    @property
    def label(self) -> str:
        return f"shard {self.index} of {self.count}"

    @property
    def end(self) -> dict[str, Any] | None:
        try:
            end = files.load_json(self.path / "end.json")
        except (OSError, ValueError):
            return None
        return end if isinstance(end, dict) else None


@dataclass
class Merged:
    out: Path
    kind: str
    frame: pd.DataFrame
    shards: list[ShardFolder]
    filled: list[str] = field(default_factory=list)   # units (or rows) a dead shard left as error rows
    dropped: list[str] = field(default_factory=list)  # --partial: damaged or repeated rows left out, one line each


def _is_shard(path: Path) -> dict[str, Any] | None:
    env = reader.read_env(path)
    sweep = env.get("sweep")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("shard"), dict) or sweep.get("kind") not in ROWS_FILE:
        return None
    shard = sweep["shard"]
    if not all(isinstance(shard.get(k), int) for k in ("index", "count")) or not isinstance(sweep.get("units"), list) \
            or not isinstance(sweep.get("units_here"), list) or not isinstance(sweep.get("fingerprint"), str):
        return None
    return env


def find_shards(paths: list[Path]) -> list[ShardFolder]:
    found: list[ShardFolder] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if not path.is_dir():
            raise UserError(f"{path} is a file; merge takes shard folders, or folders that hold them")
        candidates = [path] if _is_shard(path) else sorted(p.parent for p in path.rglob(ENV_FILE) if _is_shard(p.parent))
        found += [ShardFolder(p, _is_shard(p)) for p in candidates]
    if not found:
        raise UserError(f"{', '.join(map(str, paths))} hold no shard of a sweep (a folder whose env.json names its shard)")
    return found


def check(shards: list[ShardFolder]) -> None:
    first = shards[0]
    for s in shards[1:]:
        if s.kind != first.kind:
            raise UserError(f"{first.path} is a {first.kind} shard and {s.path} a {s.kind} shard: merge one sweep at a time")
        if s.sweep["fingerprint"] != first.sweep["fingerprint"]:
            raise UserError(f"{first.path} and {s.path} are shards of different sweeps (fingerprints "
                            f"{first.sweep['fingerprint']} and {s.sweep['fingerprint']}): their models or settings differ")
        if s.count != first.count:
            raise UserError(f"{first.path} is one of {first.count} shards and {s.path} one of {s.count}")
    by_index: dict[int, list[ShardFolder]] = {}
    for s in shards:
        by_index.setdefault(s.index, []).append(s)
    twice = {i: g for i, g in by_index.items() if len(g) > 1}
    if twice:
        i, group = sorted(twice.items())[0]
        raise UserError(f"shard {i} of {first.count} is given twice: {group[0].path} and {group[1].path}")
    missing = [i for i in range(1, first.count + 1) if i not in by_index]
    if missing:
        found = ", ".join(str(i) for i in sorted(by_index))
        raise UserError(f"shard {missing[0]} of {first.count} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + f"; found {found}")


def _read_rows(shard: ShardFolder, dropped: list[str] | None) -> pd.DataFrame:
    import pandas as pd
    path = shard.path / ROWS_FILE[shard.kind]
    return reader.read_table(path, shard.kind, dropped) if path.exists() else pd.DataFrame()


def expected_rows(kind: str, config: dict[str, Any], unit: str) -> list[dict[str, Any]]:
    """The keys of every row a unit owes, in the order a single process writes them: the plan's own answer
    (convbench.run.sweep.Plan.keys), from the sweep's recorded config."""
    plan = PLANS[kind]
    return plan.keys(from_payload(plan.config_class, config, trusted=True), unit)


def merge(paths: list[Path | str], out: Path | str, overwrite: bool = False, partial: bool = False) -> Merged:
    """The shards found in `paths` as one folder `out`; see the module's doc for what is refused."""
    import pandas as pd
    shards = sorted(find_shards([Path(p) for p in paths]), key=lambda s: s.index)
    check(shards)
    kind, units, config = shards[0].kind, shards[0].sweep["units"], shards[0].env.get("config", {})
    unit_col = PLANS[kind].unit_column
    owner = {u: s for s in shards for u in s.sweep["units_here"]}
    unowned = [u for u in units if u not in owner]
    if unowned:
        raise UserError(f"{unit_col} {unowned[0]} belongs to no shard: the shards do not add up to their sweep")
    dropped: list[str] | None = [] if partial else None  # without --partial a damaged row refuses the merge
    tables = {s.index: _read_rows(s, dropped) for s in shards}
    samples = {s.index: reader.read_samples(s.path, dropped) for s in shards}
    rows: list[dict[str, Any]] = []
    sample_frames: list[pd.DataFrame] = []
    filled: list[str] = []
    for unit in units:
        shard = owner[unit]
        frame = tables[shard.index]
        present = frame[frame[unit_col].astype(str) == str(unit)].to_dict("records") if len(frame) else []
        missing = [k for k in expected_rows(kind, config, unit) if not any(matches(r, k) for r in present)]
        for r in present:
            shard_samples = samples[shard.index]
            if "row_id" in r and shard_samples is not None and not pd.isna(r.get("row_id")):
                part = shard_samples[shard_samples["row_id"] == r["row_id"]].copy()
                part["row_id"] = len(rows)
                sample_frames.append(part)
            rows.append({**r, "row_id": len(rows)} if "row_id" in r else r)
        if missing:  # after what the unit finished, as a single process would have written them
            end = shard.end
            died = end is not None and not end.get("ok", True)
            if not (died or partial):
                what = ", ".join(f"{k} {v}" for k, v in missing[0].items() if k != unit_col) or "its run"
                raise UserError(f"{unit_col} {unit} has no row for {what} in {shard.label} ({shard.path}); "
                                "merge --partial turns what is missing into error rows")
            why = end.get("how", "it stopped") if died else "it stopped before them"
            for key in missing:
                rows.append(row_kinds.not_run(key, f"not run: {shard.label} ended early: {why}", shard.env))
                filled.append(f"{unit_col} {unit}" + "".join(f" {k} {v}" for k, v in key.items() if k != unit_col))
    merged = _write(shards, kind, rows, sample_frames, Path(out), overwrite, filled)
    merged.dropped = dropped or []
    return merged


def _write(shards: list[ShardFolder], kind: str, rows: list[dict[str, Any]], sample_frames: list[pd.DataFrame],
           out: Path, overwrite: bool, filled: list[str]) -> Merged:
    import pandas as pd
    columns, reader = list(COLUMNS[kind]), READER_COLUMNS[kind]
    frame = pd.DataFrame(rows)
    frame = frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])[columns]
    if "row_id" in frame:
        frame["row_id"] = range(len(frame))
    with folders.claim(out, overwrite):
        try:
            _stage_and_move(shards, kind, frame, sample_frames, out, reader)
        except UserError:
            raise
        except OSError as exc:  # staging or moving: a full disk or a refusal, the shards as they were
            raise files.refused(out, exc) from None
    return Merged(out, kind, frame, shards, filled)


def _stage_and_move(shards: list[ShardFolder], kind: str, frame: pd.DataFrame, sample_frames: list[pd.DataFrame],
                    out: Path, reader: list[str]) -> None:
    import pandas as pd
    first = shards[0]
    env = {**{k: v for k, v in first.env.items() if k not in ("sweep", "created")}, "created": now(),
           "sweep": {**first.sweep, "shard": None, "units_here": first.sweep["units"], "merged_from": len(shards)},
           "shards": [{"shard": s.sweep["shard"], "folder": str(s.path), "host": s.sweep.get("host"),
                       "device": s.sweep.get("device"), "end": s.end, "environment": s.env} for s in shards]}
    formats = tuple((first.env.get("config") or {}).get("formats") or ("csv",))
    # Written next to the destination first, then moved in: a merge that fails leaves nothing half-written.
    with tempfile.TemporaryDirectory(dir=out, prefix=".merge-") as tmp:
        staging = Path(tmp)
        write_csv(frame, staging / ROWS_FILE[kind])
        write_table(frame, staging, kind, [f for f in formats if f != "csv"], reader)
        if sample_frames:
            write_samples(pd.concat(sample_frames, ignore_index=True), staging)
        layers = [reader.read_table(s.path / LAYERS_CSV) for s in shards if (s.path / LAYERS_CSV).exists()]
        if layers:
            merged_layers = pd.concat(layers, ignore_index=True)
            order = {u: i for i, u in enumerate(first.sweep["units"])}
            merged_layers = merged_layers.iloc[sorted(range(len(merged_layers)), key=lambda i: (order.get(merged_layers["model"].iloc[i], 0), i))]
            write_csv(merged_layers, staging / LAYERS_CSV)
        steps = [reader.read_table(s.path / STEPS_CSV, "train_steps") for s in shards if (s.path / STEPS_CSV).exists()]
        if steps:
            write_csv(pd.concat(steps, ignore_index=True), staging / STEPS_CSV)
        write_json(staging / ENV_FILE, env)
        for item in staging.iterdir():
            shutil.move(str(item), out / item.name)

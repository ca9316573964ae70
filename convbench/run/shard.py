"""One sweep split into shards the way the engines users already run expect, and the pieces a merge checks.

A shard is I of N, counted from 1 (`--shard 2/8`). Without --shard it comes from the environment: torchrun's
RANK and WORLD_SIZE (shard RANK+1 of WORLD_SIZE), else a Slurm job array's SLURM_ARRAY_TASK_ID minus
SLURM_ARRAY_TASK_MIN (arrays need not start at 0) of SLURM_ARRAY_TASK_COUNT. The units of a sweep (a model with
all its batch sizes and modes; a compare case; a trained network) are dealt to the shards by an estimate of their
cost (MACs x images x modes), the largest first to the least loaded shard, so that shards end at about the same
time; each shard keeps its units in sweep order. The deal is deterministic: every shard computes the same one.

Every shard writes its own folder, OUT/shards/I-of-N, whose env.json records the shard, the host, the device, the
sweep's units and a fingerprint of the sweep's configuration; `convbench merge` puts them back together."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from convbench.errors import UserError

Unit = TypeVar("Unit")


@dataclass(frozen=True)
class Shard:
    index: int          # 1-based
    count: int
    source: str = "--shard"  # --shard, torchrun or slurm

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder_name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "source": self.source}


def parse(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UserError(f"--shard takes I/N, shard I of N counted from 1 (1/2 and 2/2 make a sweep of two), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count > MAX_SHARDS:
        raise UserError(f"--shard {text}: {count} shards is beyond any real sweep (at most {MAX_SHARDS:,})")
    if count < 1:
        raise UserError(f"--shard {text}: a sweep has at least one shard")
    if not 1 <= index <= count:
        raise UserError(f"--shard {text}: the shard is counted from 1 to {count}")
    return Shard(index, count)


def from_environment(env: Mapping[str, str] | None = None) -> Shard | None:
    """torchrun's RANK/WORLD_SIZE, else a Slurm array's task id and count; None outside both (or a world of one).
    Variables that cannot describe a real launch (a rank outside its world, a rank without a world) are refused in
    one line: a process that waited for peers that will never come would hang."""
    env = os.environ if env is None else env
    if ("RANK" in env) != ("WORLD_SIZE" in env):
        have, lack = ("RANK", "WORLD_SIZE") if "RANK" in env else ("WORLD_SIZE", "RANK")
        raise UserError(f"{have} is set but {lack} is not: torchrun sets both; unset {have} to run on your own")
    if "RANK" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        if not 1 <= world <= MAX_SHARDS or not 0 <= rank < world:
            raise UserError(f"RANK={rank} WORLD_SIZE={world} cannot be one process of a torchrun launch (RANK counts "
                            f"from 0 to WORLD_SIZE - 1)")
        lacking = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in env]
        if world > 1 and lacking:  # torchrun sets all four; without a rendezvous address the ranks cannot meet
            raise UserError(f"RANK={rank} WORLD_SIZE={world} are set but {' and '.join(lacking)} "
                            f"{'is' if len(lacking) == 1 else 'are'} not: torchrun sets them all; run under torchrun, or "
                            "unset RANK and WORLD_SIZE to run on your own")
        return Shard(rank + 1, world, "torchrun") if world > 1 else None
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        task, count = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_COUNT")
        if count > MAX_SHARDS:
            raise UserError(f"SLURM_ARRAY_TASK_COUNT={count} is beyond any real array (at most {MAX_SHARDS:,})")
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        if count > 1:
            if not 0 <= task - first < count:
                raise UserError(f"Slurm array task {task} is outside its array ({first} and {count} tasks); the array must be "
                                "contiguous, e.g. --array=0-7")
            return Shard(task - first + 1, count, "slurm")
    return None


MAX_SHARDS = 1_000_000


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UserError(f"{name}={env[name]!r} is not an integer") from None


def resolve(option: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard this process runs: --shard, or the engine's; both given and different is refused."""
    found = from_environment(env)
    if option is None:
        return found
    asked = parse(option)
    if found is not None and (found.index, found.count) != (asked.index, asked.count):
        raise UserError(f"--shard {asked} disagrees with {found.source}, which makes this process shard {found}; "
                        "drop --shard under an engine")
    return Shard(asked.index, asked.count, found.source) if found else asked


def deal(units: Sequence[Unit], cost: Callable[[Unit], float], count: int) -> list[list[int]]:
    """For each shard (0-based), the indices of its units in sweep order: longest processing time first."""
    loads = [0.0] * count
    owned: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(units)), key=lambda i: (-cost(units[i]), i)):
        k = min(range(count), key=lambda k: (loads[k], k))
        loads[k] += max(cost(units[i]), 0.0)
        owned[k].append(i)
    return [sorted(o) for o in owned]


def mine(units: Sequence[Unit], cost: Callable[[Unit], float], shard: Shard | None) -> list[Unit]:
    if shard is None:
        return list(units)
    return [units[i] for i in deal(units, cost, shard.count)[shard.index - 1]]


# Config fields that do not change what a sweep measures: where it writes, how it is split and supervised.
NOT_THE_SWEEP = {"out", "overwrite", "shard", "isolate", "timeout", "formats"}


def fingerprint(config: Any, units: Sequence[str]) -> str:
    """A hash of what the sweep measures: its units and every setting that changes a row. The device's index is
    left out (each rank of a node drives its own GPU), its kind is not."""
    fields = {k: v for k, v in vars(config).items() if k not in NOT_THE_SWEEP}
    if "device" in fields:
        fields["device"] = str(fields["device"]).split(":")[0]
    text = json.dumps({"config": fields, "units": list(units)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_folder(out: Path, shard: Shard) -> Path:
    return out / "shards" / shard.folder_name


def sweep_record(kind: str, config: Any, units: Sequence[str], here: Sequence[str], shard: Shard | None) -> dict[str, Any]:
    """What env.json says of the sweep a folder belongs to: enough for `convbench merge` to check that the shards
    add up to it."""
    import platform
    return {"kind": kind, "fingerprint": fingerprint(config, units), "units": list(units), "units_here": list(here),
            "shard": shard.as_dict() if shard else None, "host": platform.node(), "device": str(getattr(config, "device", ""))}

"""The committed benchmark record (pytest-benchmark's saved JSON) and whether this machine may be held to it.

A record is compared directly only on the machine kind it was saved on: same CPU model, core count and torch
build. Anywhere else it stays what it is, a record."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from convbench.measure.host import cpu_name


@dataclass(frozen=True)
class MachineKey:
    cpu: str
    cores: int
    torch: str

    def __str__(self) -> str:
        return f"{self.cpu}, {self.cores} cores, torch {self.torch}"


def this_machine() -> MachineKey:
    return MachineKey(cpu_name(), os.cpu_count() or 0, torch.__version__)


def machine_of(record: dict) -> MachineKey:
    info = record.get("machine_info", {})
    cpu = info.get("cpu", {})
    return MachineKey(str(cpu.get("brand_raw") or info.get("processor") or "?"), int(cpu.get("count") or 0),
                      str(info.get("torch") or "?"))


@dataclass(frozen=True)
class Record:
    path: Path
    machine: MachineKey
    data: dict

    @property
    def mins(self) -> dict[str, float]:
        return {b["name"]: float(b["stats"]["min"]) for b in self.data.get("benchmarks", [])}


def latest_records(record_dir: Path) -> list[Record]:
    """The newest saved run in each machine folder (pytest-benchmark numbers them 0001_, 0002_, ...)."""
    records = []
    if not record_dir.is_dir():
        return records
    for folder in sorted(p for p in record_dir.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.json"))
        if files:
            data = json.loads(files[-1].read_text())
            records.append(Record(files[-1], machine_of(data), data))
    return records


def matching_record(record_dir: Path, machine: MachineKey | None = None) -> tuple[Record | None, list[Record]]:
    machine = machine or this_machine()
    records = latest_records(record_dir)
    return next((r for r in records if r.machine == machine), None), records

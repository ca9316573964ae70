"""The one sweep runner. profile, compare and train are plans: each says what its units are (a model, a compare
case, a network to train), what a unit costs, which rows it owes, and how one is measured. The runner does the
rest the same way for all three: claims the results folder, keeps this shard's units, records the environment
and the machine's ceiling, applies the measuring settings, counts itself among the host's sweeps, measures each
unit in this process or in a child, and streams every row to the writers as it finishes.

Whatever goes wrong with a unit, it owes its rows: a measure that fails leaves a row that says so (the plan's
own business, convbench.run.rows.Builder); anything that escapes the plan (a bug, a builder that calls
sys.exit) or kills its child turns the rows the unit still owed into error rows, with the context a measured
row has. Only bad input (UserError) and Ctrl-C end a sweep; the rows finished by then are written."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Iterable, Iterator, TypeVar

from convbench.errors import UserError
from convbench.measure import ceiling
from convbench.results import folders
from convbench.results.environment import environment
from convbench.results.writers import ResultSink
from convbench.run import peers, rows, settings
from convbench.run.config import from_payload, to_payload
from convbench.run.isolate import Child
from convbench.run.rows import Row
from convbench.run.shard import Shard, mine, sweep_record

if TYPE_CHECKING:
    import pandas as pd

Unit = TypeVar("Unit")
Key = dict[str, Any]
OnRow = Callable[[dict[str, Any]], None]
OnEvent = Callable[[dict[str, Any]], None]


class Plan(Generic[Unit]):
    """What a command adds to the runner. Subclasses set the class attributes and implement `units`, `name`,
    `keys`, `describe` and `measure`."""
    kind: ClassVar[str]                      # profile, compare or train: the rows file's stem, runs/<kind>/
    unit_column: ClassVar[str]               # the column naming a unit: model, case or run
    columns: ClassVar[dict[str, str]]        # the rows file's columns, with their units
    reader_columns: ClassVar[list[str] | None] = None   # the markdown table's
    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config
        self.refused: list[str] = []   # what `units` could not resolve, one line each: said, the rest measured

    def units(self) -> list[Unit]:
        raise NotImplementedError

    def name(self, unit: Unit) -> str:
        raise NotImplementedError

    def cost(self, unit: Unit) -> float:
        """The unit's share of the sweep, for dealing units to shards."""
        return 1.0

    @classmethod
    def keys(cls, config: Any, name: str) -> list[Key]:
        """What identifies each row the unit called `name` owes, in the order it writes them (merge asks too)."""
        raise NotImplementedError

    def describe(self, unit: Unit, key: Key) -> dict[str, Any]:
        """The columns an owed row has before anything is measured: those of a row that could not be."""
        return dict(key)

    def measure(self, unit: Unit, on_stage: rows.OnStage | None, on_event: OnEvent) -> Iterator[Row]:
        """The unit's rows, measured in this process."""
        raise NotImplementedError

    def isolates(self, unit: Unit) -> bool:
        return self.config.isolated

    @property
    def wants_ceiling(self) -> bool:
        return True

    def stops(self, row: dict[str, Any]) -> str | None:
        """A reason to end the sweep after this row (a diverged training run), or None."""
        return None

    def open(self, out: Path | None) -> None:
        """Before the first unit: files of the plan's own (train's steps)."""

    def event(self, event: dict[str, Any]) -> None:
        """Something the plan streams while a unit runs (a training step)."""

    def close(self) -> None:
        """After the last unit, however the sweep ended."""

    def rows(self, units: list[Unit], on_event: OnEvent) -> Iterator[Row]:
        """Every row of `units`, unit after unit, each in this process or in a child."""
        for unit in units:
            yield from (self.isolated_rows(unit, on_event) if self.isolates(unit) else self.owed_rows(unit, on_event))

    def owed_rows(self, unit: Unit, on_event: OnEvent, on_stage: rows.OnStage | None = None) -> Iterator[Row]:
        """`measure(unit)`, and when something escapes it, an error row for each row it still owed."""
        done: list[dict[str, Any]] = []
        try:
            for row in self.measure(unit, on_stage, on_event):
                done.append(row.values)
                yield row
        except (UserError, KeyboardInterrupt, GeneratorExit):
            raise
        except (Exception, SystemExit) as exc:
            for key in self.missing(unit, done):
                yield rows.failure(self.describe(unit, key), self.config, exc, self.config.compiled)

    def missing(self, unit: Unit, done: Iterable[dict[str, Any]]) -> list[Key]:
        done = list(done)
        return [k for k in self.keys(self.config, self.name(unit)) if not any(matches(r, k) for r in done)]

    def isolated_rows(self, unit: Unit, on_event: OnEvent) -> Iterator[Row]:
        """The unit measured in a child process (convbench.run.isolate); a child that dies leaves error rows that
        say how, and during what."""
        payload = {"plan": f"{type(self).__module__}:{type(self).__name__}",
                   "config": to_payload(self.config), "unit": self.name(unit)}
        child = Child("convbench.run.sweep:unit_in_child", payload, self.config.timeout, on_event=on_event)
        done = []
        for row in child.rows():
            done.append(row.values)
            yield row
        missing = self.missing(unit, done)
        if missing and child.end.ok:  # a child that exits cleanly owes every row
            child.end.how = "child exited without finishing its rows"
        for i, key in enumerate(missing):
            at = child.end.key
            died_here = any(v == at for v in key.values()) if at is not None else i == 0
            text = child.end.describe() if died_here else f"not run: {child.end.describe()}"
            yield rows.failure(self.describe(unit, key), self.config, text, self.config.compiled)


def matches(row: dict[str, Any], key: Key) -> bool:
    return all(str(row.get(k)) == str(v) for k, v in key.items())


def unit_in_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The child's half of isolation: one unit's rows, under the settings this process applies itself."""
    module, _, name = payload["plan"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    plan = cls(from_payload(cls.config_class, payload["config"], isolate=False))
    unit = next(u for u in plan.units() if plan.name(u) == payload["unit"])
    try:
        with settings.applied(plan.config):
            for row in plan.owed_rows(unit, lambda event: send({"event": event}),
                                      lambda stage, key: send({"stage": stage, "key": key})):
                send(row.message())
    finally:
        plan.close()


@dataclass
class SweepResult:
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    interrupted: int = 0               # the signal that ended the sweep early (2: Ctrl-C), 0 when none did
    stopped: str | None = None         # why the sweep ended early (a diverged training run)
    restored: bool = False             # --overwrite, ended before a row: the run it was replacing is back
    out: Path | None = None
    refused: list[str] = field(default_factory=list)  # --arch parts that named no model (the command exits 2)

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.rows, columns=self.columns)


def run(plan: Plan, on_row: OnRow | None = None, on_event: OnEvent | None = None,
        on_start: Callable[[int], None] | None = None) -> SweepResult:
    """Measure the plan's units (this shard's, when the config names one), writing each row to config.out as it
    finishes. `on_start` learns how many rows the sweep owes; `on_event` hears the plan's events (training steps)."""
    config = plan.config
    units = plan.units()
    claim = folders.claim(Path(config.out), config.overwrite) if config.out is not None else None
    result: SweepResult | None = None
    try:
        result = _run(plan, units, claim, on_row, on_event, on_start)
        return result
    finally:
        if claim:
            claim.release()
            if result is not None:
                result.restored = claim.restored


def _run(plan: Plan, units: list, claim: folders.Claim | None, on_row: OnRow | None, on_event: OnEvent | None,
         on_start: Callable[[int], None] | None) -> SweepResult:
    config = plan.config
    out = claim.folder if claim else None
    shard = Shard(*config.shard) if config.shard else None
    names = [plan.name(u) for u in units]
    units = mine(units, plan.cost, shard)
    env = {**environment(config.device), "config": to_payload(config), "columns": plan.columns,
           "sweep": sweep_record(plan.kind, config, names, [plan.name(u) for u in units], shard)}
    if plan.wants_ceiling:  # before any row, so that every measuring process finds it cached; under the run's settings
        with settings.applied(config):
            env["ceiling"] = ceiling.obtain(config.device, (config.dtype,))[0].as_dict()
    if on_start:
        on_start(sum(len(plan.keys(config, plan.name(u))) for u in units))

    def event(e: dict[str, Any]) -> None:
        plan.event(e)
        if on_event:
            on_event(e)

    result = SweepResult(list(plan.columns), out=out)
    try:
        with ResultSink(out, plan.kind, plan.columns, config.formats, env, on_row, plan.reader_columns) as sink, \
                settings.applied(config), peers.measuring():
            plan.open(out)
            for row in plan.rows(units, event):
                sink.add(row)
                if claim:
                    claim.commit()  # a row of its own: the run it replaces (--overwrite) goes for good
                result.stopped = plan.stops(row.values)
                if result.stopped:
                    break
    finally:
        plan.close()
    result.rows, result.layers, result.interrupted = sink.rows, sink.layers, sink.interrupted
    result.refused = list(plan.refused)
    return result

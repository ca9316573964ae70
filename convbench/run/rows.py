"""Rows: how a measurement becomes a row, in one place for profile, compare, train and merge.

A row is a flat dict of columns. Whatever made it (a measure that worked, one that failed, a child that died, a
DDP launch that failed, a shard that ended early), it leaves here with the same things: its status, its error or
note in words, the context of the process that measured it (read live, convbench.run.settings) and the time it
finished. What travels with a row but is not a column (its raw timing samples, a model's per-module counts)
travels beside it in a `Row`, never under a private key of the dict.

A measurement that cannot exist is a fact about the model, not a crash: a training forward of inception_v3 at
batch 1 fails because its auxiliary head's batch norm sees one value per channel. Rows say that in a few words;
anything not recognised keeps its one-line exception text."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from convbench.errors import Diverged, RowFailure, UserError, error_text, is_oom
from convbench.measure.host import now
from convbench.run import settings

OK, PARTIAL, OOM, ERROR, DIVERGED = "ok", "partial", "oom", "error", "diverged"
FAILED = (ERROR, DIVERGED)          # a run with such a row exits 1


@dataclass
class Row:
    """A finished row (`values`, its columns) with its raw per-iteration timings (`samples`, written to the samples
    file under the row's row_id) and, on the first row of a profiled model with --by-layer, its per-module counts
    (`layers`, written to layers.csv)."""
    values: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """As a child process sends it (convbench.run.isolate)."""
        return {"row": self.values, "samples": self.samples, "layers": self.layers}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "Row":
        return cls(message["row"], message.get("samples") or [], message.get("layers") or [])


@dataclass
class Measured:
    """What a measure returns besides its columns: a `note` (what a column means in this row, e.g. whose memory
    it is), a `failure` (part of it could not be measured: the row is partial) and raw `samples`."""
    columns: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    failure: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)


def context(config: Any, compiled: bool) -> dict[str, Any]:
    """The context columns of a row measured under `config`, read now from this process."""
    return settings.live_context(config.device, config.dtype, config.channels_last, compiled)


def finished(values: dict[str, Any], config: Any, compiled: bool) -> dict[str, Any]:
    """`values` with the measuring process's context and the time: the last step of every row."""
    return {**values, **context(config, compiled), "timestamp": now()}


def failure_text(exc: BaseException) -> str:
    """A failure in words: a RowFailure says it already; a model that ends the process says so; anything else is
    its type and message."""
    if isinstance(exc, SystemExit):
        return f"the model called sys.exit({exc.code!r})"
    if isinstance(exc, RowFailure):
        return str(exc)
    return error_text(exc)


def status_of(exc: BaseException) -> str:
    if isinstance(exc, Diverged):
        return DIVERGED
    return OOM if is_oom(exc) else ERROR


def failure(values: dict[str, Any], config: Any, problem: BaseException | str, compiled: bool = False,
            status: str | None = None) -> Row:
    """The row of something that could not be measured at all, with the same context as a measured one."""
    row = Builder(dict(values), essential=(WHOLE,))
    if isinstance(problem, str):
        row.failures.append((WHOLE, status or ERROR, problem))
    else:
        row.fail(WHOLE, problem, status)
    return row.finish(config, compiled)


# What a run's env.json records of the context every row carries (convbench.results.environment).
_RECORDED = {"torch": "torch", "cuda": "cuda", "cudnn": "cudnn", "convbench": "convbench", "git_commit": "git_commit"}


def not_run(values: dict[str, Any], text: str, env: dict[str, Any]) -> dict[str, Any]:
    """The row of something a shard never reached, as merge fills it: an error, with what the shard's env.json
    says of the context (its device, software and commit); what only a measuring process knows stays empty."""
    recorded = {column: env.get(key) for column, key in _RECORDED.items() if env.get(key) is not None}
    device = (env.get("sweep") or {}).get("device")
    return {**values, **recorded, **({"device": device} if device else {}), "status": ERROR, "error": text,
            "timestamp": now()}


LABELS = {"saved_bytes": "saved bytes", "layer_times": "layer times", "timing": "timing", "memory": "memory",
          "build": "build", "counting": "counting failed", "counts": "counts"}
WHOLE = "row"  # the label of a failure that leaves nothing of the row to measure
# A failure of these is the whole row's error, said as it is (a training run's loss that became NaN).
UNLABELLED = {"training", WHOLE}

_KNOWN = [
    (re.compile(r"Expected more than 1 value per channel when training"),
     "n/a at batch 1 (a batch norm over a 1x1 grid needs at least 2 images to train)"),
]


def reason(text: str) -> str:
    for pattern, short in _KNOWN:
        if pattern.search(text):
            return short
    return text


def labelled(label: str, text: str) -> str:
    """'saved bytes: n/a at batch 1 (...)'; a memory pass's 'training pass failed: ...' becomes 'training memory: ...'."""
    if label in UNLABELLED:
        return text
    if text.startswith("training pass failed: "):
        return f"training memory: {reason(text.removeprefix('training pass failed: '))}"
    return f"{LABELS.get(label, label)}: {reason(text)}"


OnStage = Callable[[str, Any], None]


class Builder:
    """A row being filled by several measures, each of which fails on its own and leaves only its columns empty.
    The row's status: the `essential` measures' failure (oom or error: no figure the row exists for), else
    partial when another measure failed, else ok."""

    def __init__(self, values: dict[str, Any], essential: Iterable[str] = (), on_stage: OnStage | None = None,
                 stage_key: Any = None) -> None:
        self.values = values
        self.essential = set(essential)
        self.on_stage, self.stage_key = on_stage, stage_key
        self.failures: list[tuple[str, str, str]] = []
        self.notes: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.layers: list[dict[str, Any]] = []

    def attempt(self, label: str, measure: Callable[[], dict[str, Any] | Measured]) -> None:
        """Run one measure: its columns join the row; a failure is recorded under `label`."""
        got = self.obtain(label, measure)
        if got is None:
            return
        if not isinstance(got, Measured):
            got = Measured(dict(got))
        if got.failure:
            self.failures.append((label, ERROR, got.failure))
        if got.note:
            self.notes.append(got.note)
        self.samples += got.samples
        self.values.update(got.columns)

    def obtain(self, label: str, make: Callable[[], Any]) -> Any:
        """What `make` returns (a built model, per-module times), or None with the failure recorded under `label`."""
        if self.on_stage:
            self.on_stage(label, self.stage_key)
        try:
            return make()
        except UserError:
            raise  # bad input (an --output the forward lacks) ends the run in one line, not one row
        except (Exception, SystemExit) as exc:
            self.fail(label, exc)
            return None

    def fail(self, label: str, exc: BaseException, status: str | None = None) -> None:
        """Record a failure of the measure `label` (one that ran outside `obtain`, shared by several rows)."""
        if is_oom(exc) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.failures.append((label, status or status_of(exc), failure_text(exc)))

    def excuse(self, label: str, why: str) -> None:
        """A failure of `label` that was not asked for: said in the note, not the row's status (a counts-only run
        at batch 1 did not ask for saved bytes, which a batch norm over a 1x1 grid cannot give there)."""
        kept = []
        for failed, kind, text in self.failures:
            if failed == label:
                self.notes.append(f"{labelled(label, text)}; {why}")
            else:
                kept.append((failed, kind, text))
        self.failures = kept

    @property
    def essential_failed(self) -> bool:
        return any(label in self.essential for label, _, _ in self.failures)

    def inherit(self, other: "Builder") -> None:
        """Take another builder's columns, failures and notes (a measure shared by several rows)."""
        self.values.update(other.values)
        self.failures += other.failures
        self.notes += other.notes

    def finish(self, config: Any, compiled: bool) -> Row:
        values = dict(self.values)
        values["error"] = "; ".join(dict.fromkeys(labelled(label, text) for label, _, text in self.failures)) or None
        values["note"] = "; ".join(dict.fromkeys(filter(None, [values.get("note"), *self.notes]))) or None
        essential = next((kind for label, kind, _ in self.failures if label in self.essential), None)
        values["status"] = essential or (PARTIAL if self.failures else OK)
        return Row(finished(values, config, compiled), self.samples, self.layers)

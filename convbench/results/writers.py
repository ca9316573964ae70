"""Writers: each finished row to its CSV at once, raw samples beside it, the other formats at the end."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from convbench.errors import DiskFull, UserError
from convbench.files import FULL, atomic_path, write_atomically
from convbench.results.schema import ENV_FILE, LAYER_COLUMNS, LAYERS_CSV, SAMPLE_COLUMNS, SAMPLES_CSV, SAMPLES_PARQUET

if TYPE_CHECKING:
    import pandas as pd


class Finished(Protocol):
    """What a writer takes of a finished row (convbench.run.rows.Row is one): its values, its per-layer rows and
    its timed samples."""
    values: dict[str, Any]
    layers: list[dict[str, Any]]
    samples: list[dict[str, Any]] | None


class RowWriter:
    """Appends each finished row to a CSV at once, so an interrupted or failed run keeps them all. A row goes to
    disk whole or not at all: a write the disk cannot take is cut back to the last whole row, and said as DiskFull."""

    def __init__(self, path: Path, columns: Iterable[str], append: bool = False) -> None:
        self.path = path
        self.columns = list(columns)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self._fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise _disk_full(path, exc) if exc.errno in FULL else UserError(f"cannot write {path}: {exc.strerror}") from None
        if not append:
            self._put(self._line(dict(zip(self.columns, self.columns))))

    def _line(self, row: dict[str, Any]) -> bytes:
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        return buffer.getvalue().encode()

    def _put(self, data: bytes) -> None:
        start = os.lseek(self._fd, 0, os.SEEK_END)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            os.ftruncate(self._fd, start)  # never half a row
            if exc.errno in FULL:
                raise _disk_full(self.path, exc) from None
            raise

    def write(self, row: dict[str, Any]) -> None:
        self._put(self._line({k: _cell(row.get(k)) for k in self.columns}))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _disk_full(path: Path, exc: OSError) -> DiskFull:
    return DiskFull(f"the disk holding {path.parent} is full ({exc.strerror})")


class SampleWriter:
    """Raw per-iteration timings keyed to their row (`row_id`), so that a later `convbench diff` can test a
    difference instead of trusting two medians. Streamed to samples.csv as rows finish (an interrupted run keeps
    them); at the end rewritten as samples.parquet when pyarrow is installed (the CSV stays where that fails)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._writer = RowWriter(out / SAMPLES_CSV, SAMPLE_COLUMNS)

    def write(self, row_id: int, samples: list[dict[str, Any]]) -> None:
        for i, sample in enumerate(samples):
            self._writer.write({"row_id": row_id, "iteration": i, **sample})

    def close(self) -> None:
        self._writer.close()
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return
        import pandas as pd
        frame = pd.read_csv(self.out / SAMPLES_CSV)
        with atomic_path(self.out / SAMPLES_PARQUET) as temporary:
            frame.to_parquet(temporary, index=False)
        (self.out / SAMPLES_CSV).unlink()


class ResultSink:
    """Where a run's rows go: env.json first, each row to the CSV as it finishes, the other formats at the end.
    A row's samples (its per-iteration timings) go to the samples file under the row's `row_id`, and its layers
    (per-module counts) to layers.csv at the end.

    Ctrl-C inside the block ends the run, not the program: the rows so far are written and `interrupted` set."""

    def __init__(self, out: Path | None, stem: str, columns: Iterable[str], formats: Iterable[str],
                 env: dict[str, Any] | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
                 reader_columns: Iterable[str] | None = None) -> None:
        self.out, self.stem, self.columns, self.formats = out, stem, list(columns), tuple(formats)
        self.reader_columns = list(reader_columns) if reader_columns else None
        self.env, self.on_row = env or {}, on_row
        self.rows: list[dict[str, Any]] = []
        self.layers: list[dict[str, Any]] = []
        self.interrupted = 0                  # the signal that ended the run early, 0 when none did
        self._writer: RowWriter | None = None
        self._samples: SampleWriter | None = None

    def __enter__(self) -> "ResultSink":
        if self.out is not None:
            write_json(self.out / ENV_FILE, self.env)
            self._writer = RowWriter(self.out / f"{self.stem}.csv", self.columns)
            if "row_id" in self.columns:
                self._samples = SampleWriter(self.out)
        return self

    def add(self, finished: Finished) -> None:
        row = finished.values
        if "row_id" in self.columns:
            row["row_id"] = len(self.rows)
        if self._writer:
            self._writer.write(row)  # first: a row the disk cannot take is not counted as written
        self.rows.append(row)
        self.layers += finished.layers
        if self._samples and finished.samples:
            self._samples.write(row["row_id"], finished.samples)
        if self.on_row:
            self.on_row(row)

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.rows, columns=self.columns)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._writer:
            self._writer.close()
        if exc_type is not None and issubclass(exc_type, DiskFull):
            if self._samples:
                self._samples._writer.close()
            raise DiskFull(f"{exc}; the {len(self.rows)} finished row{'s' if len(self.rows) != 1 else ''} "
                           f"{'are' if len(self.rows) != 1 else 'is'} in {self.out / (self.stem + '.csv')}") from None
        if self._samples:
            self._samples.close()
        if self.out is not None:
            write_table(self.frame, self.out, self.stem, self.formats, self.reader_columns)
            if self.layers:
                import pandas as pd
                pd.DataFrame(self.layers, columns=LAYER_COLUMNS).to_csv(self.out / LAYERS_CSV, index=False)
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.interrupted = getattr(exc, "signal_number", 2)
            return True
        return False


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, dict):
        return ";".join(f"{k}:{v}" for k, v in value.items())
    return value


def write_table(df: pd.DataFrame, out: Path, stem: str, formats: Iterable[str],
                reader_columns: list[str] | None = None) -> list[Path]:
    """Write the formats other than the streamed CSV, each whole or not at all; markdown is for reading, so it keeps
    `reader_columns` (those with a value in some row) and points to the CSV for the rest. Returns the files written."""
    written = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "csv":
            continue
        if fmt == "json":
            write_atomically(path, df.to_json(orient="records", indent=1))
        elif fmt == "md":
            if reader_columns:
                shown = [c for c in reader_columns if c in df and df[c].notna().any() and (df[c].astype(str) != "").any()]
                write_atomically(path, to_markdown(df[shown]) + f"\nEvery column, units in env.json: {stem}.csv\n")
            else:
                write_atomically(path, to_markdown(df))
        elif fmt == "parquet":
            with atomic_path(path) as temporary:
                df.to_parquet(temporary)
        written.append(path)
    return written


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub table, written here so markdown output needs no extra package."""
    def fmt(v: Any) -> str:
        v = _cell(v)
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=1, default=str))


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """A whole table as CSV, whole or not at all (a merge's rows, the gate's figures)."""
    write_atomically(path, df.to_csv(index=False))


def write_markdown(df: pd.DataFrame, path: Path, lines: Iterable[str] = ()) -> None:
    """A table for reading, with lines of text under it, whole or not at all."""
    write_atomically(path, to_markdown(df) + "".join(f"\n{line}" for line in lines) + ("\n" if lines else ""))


def write_samples(frame: pd.DataFrame, out: Path) -> Path:
    """Raw samples gathered whole (a merge's): samples.parquet where pyarrow is installed, else samples.csv."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        write_csv(frame, out / SAMPLES_CSV)
        return out / SAMPLES_CSV
    with atomic_path(out / SAMPLES_PARQUET) as temporary:
        frame.to_parquet(temporary, index=False)
    return out / SAMPLES_PARQUET

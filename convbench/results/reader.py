"""Reading a results folder back, for merge, diff and report: every file convbench wrote is either read whole and
sound, or refused in one line that names the file and the row. What is refused: what is not a regular file (a
FIFO would block), bytes that are not text (NUL), a row cut off or with fields added, a header without the
columns its kind needs, text or an infinity in a column of figures, a negative count or time, and a row whose
identity (model, batch size, mode, ...) an earlier row already has. A caller that can go on without a damaged
row (merge --partial) passes `dropped`, and gets the rest with a line per row left out."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convbench import files
from convbench.errors import UserError
from convbench.results.schema import ENV_FILE, SAMPLES_CSV, SAMPLES_PARQUET

if TYPE_CHECKING:
    import pandas as pd

# The columns without which convbench cannot read a rows file as its kind.
REQUIRED = {"profile": ("model", "batch_size", "status", "params", "macs", "latency_ms_p50"),
            "compare": ("case", "variant", "batch_size", "status", "macs", "measured_ratio"),
            "train": ("run", "status", "step_ms_p50"), "train_steps": ("run", "step", "loss"),
            "samples": ("row_id", "latency_ms")}

# What makes a row itself within one file: two rows with the same values here are one row written twice.
IDENTITY = {
    "profile": ("model", "input_size", "batch_size", "mode", "dtype", "channels_last", "device"),
    "compare": ("comparison", "case", "variant", "input_shape", "batch_size", "mode", "dtype", "device"),
    "train": ("run", "nproc"),
    "train_steps": ("run", "nproc", "step"),
    "samples": ("row_id", "iteration"),
}

# Columns of figures: empty where not measured, else a finite number; not negative unless named in SIGNED.
FIGURES = {
    "profile": ("input_size", "batch_size", "params", "param_bytes", "macs", "acts", "saved_bytes", "saved_act_bytes",
                "peak_mem_infer_bytes", "peak_mem_train_bytes", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99",
                "latency_ms_iqr", "latency_ms_mean", "latency_ms_min", "timed_iters", "host_busy", "throughput_img_s",
                "achieved_tflops", "intensity", "pct_peak", "device_ms", "gpu_busy", "row_id", "instructions",
                "instructions_per_mac"),
    "compare": ("batch_size", "params", "macs", "acts", "claimed_ratio", "counted_ratio", "params_ratio",
                "measured_ratio", "ratio_ci_low", "ratio_ci_high", "device_ms", "gpu_busy", "device_ratio",
                "saving_realized", "latency_ms_p50", "baseline_ms_p50", "pct_peak", "pairs", "drift", "host_busy",
                "saved_act_bytes", "saved_act_ratio", "peak_mem_infer_bytes", "peak_mem_ratio", "max_abs_diff", "row_id"),
    "train": ("input_size", "batch_size", "steps", "nproc", "lr", "step_ms_p50", "step_ms_p90", "images_per_s",
              "aggregate_images_per_s", "scaling_efficiency", "train_flops_per_image", "mfu", "peak_mem_train_bytes",
              "first_loss", "final_loss", "final_train_acc", "heldout_acc_start", "heldout_acc", "wall_s", "host_busy"),
    "train_steps": ("nproc", "step", "loss", "batch_acc", "step_ms"),
    "samples": ("row_id", "iteration", "latency_ms", "baseline_ms"),
}
SIGNED = {"saving_realized"}  # a variant slower than its baseline realises a negative share of its saving


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _raw(path: Path) -> bytes:
    try:
        return files.read_bytes(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or _short(exc)}") from None


def _csv_text(path: Path, dropped: list[str] | None) -> str:
    """The file's text with every record whole: as many fields as the header, the last one ended by its line end."""
    data = _raw(path)
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise UserError(f"{path} is damaged: line {line} holds NUL bytes (a file cut off by a crash, or not a CSV)")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError(f"{path} is damaged: line {line} is not UTF-8 text") from None
    if not text.strip():
        raise UserError(f"{path} is empty: convbench writes its header first, so the run that wrote it did not start, "
                        "or the file was cut to nothing")
    records = list(csv.reader(io.StringIO(text, newline="")))
    width = len(records[0])
    bad = [i for i, r in enumerate(records[1:], start=1) if len(r) != width]
    if not text.endswith("\n") and len(records) > 1 and len(records) - 1 not in bad:
        bad.append(len(records) - 1)  # the last row lost its end: whatever its last field held may be cut short
    if not bad:
        return text
    said = [f"row {i} of {path} is cut off or damaged ("
            + (f"{len(records[i])} fields where the header has {width})" if len(records[i]) != width else
               "the file ends inside it, with no line end)") for i in bad]
    if dropped is None:
        raise UserError(said[0] + (f"; {len(bad) - 1} more such row{'s' if len(bad) > 2 else ''}" if len(bad) > 1 else ""))
    dropped += said
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(r for i, r in enumerate(records) if i == 0 or i not in bad)
    return out.getvalue()


def _check_figures(frame: pd.DataFrame, path: Path, kind: str) -> None:
    import pandas as pd
    for column in FIGURES.get(kind, ()):
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        text = frame[column].notna() & values.isna()
        if text.any():
            i = int(text.idxmax())
            raise UserError(f"row {i + 1} of {path} is damaged: {column} holds {str(frame[column][i])[:40]!r}, not a number")
        infinite = values.map(lambda v: isinstance(v, float) and math.isinf(v))
        negative = (values < 0) if column not in SIGNED else pd.Series(False, index=values.index)
        for mask, what in ((infinite, "an infinity, where a figure is finite"), (negative, "a negative figure")):
            if mask.any():
                i = int(mask.idxmax())
                raise UserError(f"row {i + 1} of {path} is damaged: {column} holds {values[i]}: {what}")
        frame[column] = values


def _check_identity(frame: pd.DataFrame, path: Path, kind: str, dropped: list[str] | None) -> pd.DataFrame:
    keys = [c for c in IDENTITY.get(kind, ()) if c in frame.columns]
    if not keys or not len(frame):
        return frame
    twice = frame.duplicated(subset=keys, keep="first")
    if not twice.any():
        return frame
    said = []
    for i in twice[twice].index:
        who = ", ".join(f"{k} {frame[k][i]}" for k in keys if str(frame[k][i]) not in ("", "nan"))
        said.append(f"row {i + 1} of {path} repeats an earlier row ({who})")
    if dropped is None:
        raise UserError(said[0] + "; a row written twice is refused, not counted twice")
    dropped += said
    return frame[~twice].reset_index(drop=True)


def read_table(path: Path, kind: str | None = None, dropped: list[str] | None = None) -> pd.DataFrame:
    """A CSV (or parquet) file convbench wrote, checked whole (see the module's doc), or one line saying why it
    cannot be read. With `dropped`, damaged and repeated rows are left out and said there instead."""
    import pandas as pd
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(_raw(path)))
        else:
            text = _csv_text(path, dropped)
            frame = pd.read_csv(io.StringIO(text))
    except UserError:
        raise
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read {path}: {_short(exc)}") from None
    except Exception as exc:  # pyarrow's own errors for a file that is not parquet
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {_short(exc)}") from None
    lacking = [c for c in REQUIRED.get(kind or "", ()) if c not in frame.columns]
    if lacking:
        raise UserError(f"{path} is not a convbench {kind} file: it has no {', '.join(lacking)} column"
                        f"{'s' if len(lacking) > 1 else ''}")
    if kind:
        _check_figures(frame, path, kind)
        frame = _check_identity(frame, path, kind, dropped)
    return frame


def read_samples(folder: Path, dropped: list[str] | None = None) -> pd.DataFrame | None:
    """The raw per-iteration timings of a run, or None where it has none."""
    parquet, csv_file = folder / SAMPLES_PARQUET, folder / SAMPLES_CSV
    if parquet.exists():
        try:
            return read_table(parquet, "samples", dropped)
        except UserError:
            if not csv_file.exists():  # the CSV stays beside a parquet that could not be written whole, or read here
                raise
    return read_table(csv_file, "samples", dropped) if csv_file.exists() else None


# env.json's entries that other code reads, with the type convbench writes them as.
ENV_TYPES: dict[str, type | tuple[type, ...]] = {"sweep": dict, "config": dict, "columns": dict,
                                                 "ceiling": (dict, type(None)), "created": str}


def read_env(folder: Path) -> dict[str, Any]:
    """A run's env.json, or {} where it is missing or unreadable (a run's rows stand without it); one whose entries
    have other types than convbench writes is refused in one line."""
    path = folder / ENV_FILE
    try:
        env = files.load_json(path)
    except FileNotFoundError:
        return {}
    except files.NotRegular as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except (OSError, ValueError):
        return {}
    if not isinstance(env, dict):
        return {}
    for key, kind in ENV_TYPES.items():
        if key in env and not isinstance(env[key], kind):
            raise UserError(f"{path} is damaged: its {key!r} is a {type(env[key]).__name__}, where convbench writes "
                            f"{'an object' if kind in (dict, (dict, type(None))) else 'text'}")
    return env

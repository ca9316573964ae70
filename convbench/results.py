"""Row schema, the run's environment, and writers. Rows are flat dicts; a run is a pandas DataFrame."""
from __future__ import annotations

import csv
import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

import convbench
from convbench.errors import UserError
from convbench.settings import cpu_name

if TYPE_CHECKING:
    import pandas as pd

# Column -> unit or meaning; the order is the CSV's. The context columns end every kind of row.
CONTEXT_COLUMNS: dict[str, str] = {
    "device": "cpu or cuda[:N]",
    "device_name": "GPU or CPU model",
    "dtype": "fp32, or the autocast dtype",
    "channels_last": "NHWC memory format",
    "compile": "torch.compile used",
    "cudnn_benchmark": "torch.backends.cudnn.benchmark",
    "tf32_matmul": "torch.backends.cuda.matmul.allow_tf32",
    "tf32_cudnn": "torch.backends.cudnn.allow_tf32",
    "matmul_precision": "torch.get_float32_matmul_precision(): highest (fp32) or high (TF32)",
    "threads": "torch.get_num_threads()",
    "pid": "the process that measured the row (an --isolate child's own)",
    "shards_on_host": "convbench sweeps measuring on this host when the row finished, this one included",
    "torch": "torch version",
    "cuda": "CUDA version torch was built with",
    "cudnn": "cuDNN version",
    "convbench": "convbench version",
    "git_commit": "convbench source commit: from git in a checkout, else recorded when the wheel was built; unknown if neither",
    "timestamp": "UTC, when the row finished",
}

PROFILE_COLUMNS: dict[str, str] = {
    "model": "model name, or package.module:function",
    "family": "architecture family",
    "input_size": "input height = width, pixels",
    "batch_size": "images per forward",
    "mode": "eager, compile, graphs (CUDA graph replay) or compile+graphs (torch.compile mode=reduce-overhead)",
    "status": "ok; partial (a measure failed, see error); oom or error (not built or timed)",
    "error": "what failed: why a row is not ok",
    "note": "what a figure means in this row, or why a column is empty though nothing failed",
    "params": "parameters",
    "param_bytes": "bytes of parameters as stored (fp32)",
    "macs": "multiply-accumulates per image, conv + linear/matmul (the run's counter: dispatch or fvcore)",
    "acts": "conv + linear output elements per image",
    "unsupported_ops": "compute ops the counter saw but did not count, e.g. batch norm and pooling (op:calls)",
    "counter": "what counted MACs and activations: dispatch (meta device) or fvcore (JIT trace)",
    "saved_bytes": "bytes autograd saves in one training forward at this batch (unique storages, params included)",
    "saved_act_bytes": "saved_bytes without parameters, buffers and autocast's weight copies",
    "peak_mem_infer_bytes": "measured peak over baseline, inference forward",
    "peak_mem_train_bytes": "measured peak over baseline, forward + backward",
    "latency_ms_p50": "median latency of one forward at this batch, ms",
    "latency_ms_p90": "ms",
    "latency_ms_p99": "ms",
    "latency_ms_iqr": "interquartile range, ms",
    "latency_ms_mean": "ms",
    "latency_ms_min": "ms",
    "timed_iters": "timed iterations after warm-up",
    "noisy": "IQR / median above 0.10",
    "host_busy": "share of the machine's CPU time other processes used (or a hypervisor stole) while the row was timed",
    "busy": "host_busy above 0.10: timed on a busy machine, read with care",
    "throughput_img_s": "batch / median latency",
    "achieved_tflops": "2 x macs x batch / median latency, TFLOP/s",
    "intensity": "estimated FLOPs per byte: 2 x macs x batch over weights read once plus conv/linear outputs written and read once",
    "pct_peak": "achieved_tflops over this machine's measured peak for the dtype (convbench ceiling)",
    "bound": "compute or memory: which measured ceiling applies at this intensity",
    "device_ms": "CUDA: the GPU's busy time per forward, the union of the kernels torch.profiler records, ms (every mode)",
    "gpu_busy": "CUDA: device_ms / latency p50",
    "launch_bound": "CUDA: gpu_busy below 0.5, the host's launching decides the latency",
    "row_id": "this row's index in the run; samples.parquet (or samples.csv) holds its per-iteration timings",
    **CONTEXT_COLUMNS,
}


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """The source's commit: from git in a checkout, else the one recorded when the wheel was built (setup.py)."""
    package = Path(convbench.__file__).resolve().parent
    if (package.parent / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(package.parent), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return (package / "_commit.txt").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def environment(device: str) -> dict[str, Any]:
    """env.json: the machine and software behind a results folder."""
    env: dict[str, Any] = {
        "convbench": convbench.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "created": now(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        env["gpu"] = {"name": props.name, "memory_bytes": props.total_memory, "capability": f"{props.major}.{props.minor}",
                      "multiprocessors": props.multi_processor_count}
        try:
            env["gpu"]["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                                  capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    try:
        import fvcore  # noqa: F401
        from importlib.metadata import version
        env["fvcore"] = version("fvcore")
    except Exception:  # fvcore's absence is recorded, not fatal here
        env["fvcore"] = None
    return env


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RowWriter:
    """Appends each finished row to a CSV at once (flushed), so an interrupted or failed run keeps them all."""

    def __init__(self, path: Path, columns: Iterable[str], append: bool = False) -> None:
        self.path = path
        self.columns = list(columns)
        self._file = open(path, "a" if append else "w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        if not append:
            self._csv.writeheader()
        self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({k: _cell(row.get(k)) for k in self.columns})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


SAMPLE_COLUMNS = ["row_id", "iteration", "latency_ms", "baseline_ms"]


class SampleWriter:
    """Raw per-iteration timings keyed to their row (`row_id`), so that a later `convbench diff` can test a
    difference instead of trusting two medians. Streamed to samples.csv as rows finish (an interrupted run keeps
    them); at the end rewritten as samples.parquet when pyarrow is installed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._writer = RowWriter(out / "samples.csv", SAMPLE_COLUMNS)

    def write(self, row_id: int, samples: list[dict[str, Any]]) -> None:
        for i, sample in enumerate(samples):
            self._writer.write({"row_id": row_id, "iteration": i, **sample})

    def close(self) -> None:
        import pandas as pd
        self._writer.close()
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return
        frame = pd.read_csv(self.out / "samples.csv")
        frame.to_parquet(self.out / "samples.parquet", index=False)
        (self.out / "samples.csv").unlink()


class ResultSink:
    """Where a run's rows go: env.json first, each row to the CSV as it finishes, the other formats at the end.
    A row's "_samples" (its per-iteration timings) go to the samples file under the row's `row_id`.

    Ctrl-C inside the block ends the run, not the program: the rows so far are written and `interrupted` set."""

    def __init__(self, out: Path | None, stem: str, columns: Iterable[str], formats: Iterable[str],
                 env: dict[str, Any] | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
                 reader_columns: Iterable[str] | None = None) -> None:
        self.out, self.stem, self.columns, self.formats = out, stem, list(columns), tuple(formats)
        self.reader_columns = list(reader_columns) if reader_columns else None
        self.env, self.on_row = env or {}, on_row
        self.rows: list[dict[str, Any]] = []
        self.interrupted = False
        self._writer: RowWriter | None = None
        self._samples: SampleWriter | None = None

    def __enter__(self) -> "ResultSink":
        if self.out is not None:
            write_json(self.out / "env.json", self.env)
            self._writer = RowWriter(self.out / f"{self.stem}.csv", self.columns)
            if "row_id" in self.columns:
                self._samples = SampleWriter(self.out)
        return self

    def add(self, row: dict[str, Any]) -> None:
        samples = row.pop("_samples", None)
        if "row_id" in self.columns:
            row["row_id"] = len(self.rows)
        self.rows.append(row)
        if self._writer:
            self._writer.write(row)
        if self._samples and samples:
            self._samples.write(row["row_id"], samples)
        if self.on_row:
            self.on_row(row)

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.rows, columns=self.columns)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._writer:
            self._writer.close()
        if self._samples:
            self._samples.close()
        if self.out is not None:
            write_table(self.frame, self.out, self.stem, self.formats, self.reader_columns)
        if exc_type is KeyboardInterrupt:
            self.interrupted = True
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
    """Write the formats other than the streamed CSV; markdown is for reading, so it keeps `reader_columns` (those
    with a value in some row) and points to the CSV for the rest. Returns the files written."""
    written = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "csv":
            continue
        if fmt == "json":
            path.write_text(df.to_json(orient="records", indent=1))
        elif fmt == "md":
            if reader_columns:
                shown = [c for c in reader_columns if c in df and df[c].notna().any() and (df[c].astype(str) != "").any()]
                path.write_text(to_markdown(df[shown]) + f"\nEvery column, units in env.json: {stem}.csv\n")
            else:
                path.write_text(to_markdown(df))
        elif fmt == "parquet":
            try:
                df.to_parquet(path)
            except ImportError as exc:
                raise UserError(f"parquet output needs pyarrow (pip install pyarrow): {exc}") from None
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
    path.write_text(json.dumps(data, indent=1, default=str))

"""`convbench report DIR`: pictures, tables and the environment of any results folder, as a self-contained
HTML page (images embedded), the PNGs, and a markdown summary, all written into DIR.

It reads every profile.csv, compare.csv, train.csv / train_steps.csv and env.json below DIR. Plotting needs
matplotlib, an optional extra (`pip install "convbench[report]"`)."""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from convbench.analysis.diff import diff
from convbench.errors import UserError
from convbench.measure.roofline import intensity
from convbench.results import folders, reader
from convbench.results.schema import ENV_FILE
from convbench.files import atomic_path, write_atomically
from convbench.results.writers import to_markdown

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Figure:
    name: str
    title: str
    caption: str


@dataclass
class Report:
    folder: Path                  # the results it reads
    out: Path | None = None       # where it writes (default: the results folder)
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    envs: dict[str, dict] = field(default_factory=dict)  # each run's env.json, by its folder relative to the report

    def __post_init__(self) -> None:
        self.out = self.out or self.folder

    @property
    def html_path(self) -> Path:
        return self.out / "report.html"


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _run_colours(runs) -> dict[str, object]:
    """One colour per run (a results folder below the report's) or per model, the same in every figure."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return {run: cmap(i % 10) for i, run in enumerate(sorted(runs))}


def _label(ax, text: str, x: float, y: float) -> None:
    """A point's label, legible (8 pt) and kept inside the axes: to the left of points in the right third."""
    import numpy as np
    lo, hi = ax.get_xlim()
    log = ax.get_xscale() == "log"
    pos = (np.log10(x) - np.log10(lo)) / (np.log10(hi) - np.log10(lo)) if log and x > 0 and lo > 0 else (x - lo) / ((hi - lo) or 1)
    right = pos > 0.66
    ax.annotate(text, (x, y), xytext=(-4 if right else 4, 3), textcoords="offset points", fontsize=8,
                ha="right" if right else "left", annotation_clip=True, clip_on=True)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError('convbench report draws with matplotlib, which is not installed: pip install "convbench[report]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _found(folder: Path, name: str) -> list[Path]:
    """Every `name` below `folder`, but not a merged sweep's shards (OUT/shards/I-of-N) beside OUT's own."""
    paths = sorted(folder.rglob(name))
    return [p for p in paths if not (p.parent.parent.name == "shards" and (p.parent.parent.parent / name).exists())]


def _read_all(folder: Path, name: str) -> pd.DataFrame | None:
    """Every `name` below `folder`, with a `folder` column saying which run each row came from."""
    import pandas as pd
    frames = []
    for path in _found(folder, name):
        frame = reader.read_table(path, path.stem)
        frame.insert(0, "folder", str(path.parent.relative_to(folder)) if path.parent != folder else ".")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def _legend(ax, **options) -> None:
    """A legend where the axes hold a labelled line (a run without a ceiling has none: no empty box, no warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].isin(["ok", "partial"])] if "status" in df else df


def _save(fig, report: Report, name: str, title: str, caption: str) -> None:
    fig.tight_layout()
    with atomic_path(report.out / f"{name}.png") as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    report.figures.append(Figure(name, title, caption))


def _profile_figures(plt, report: Report, df: pd.DataFrame) -> None:
    timed = _ok(df).dropna(subset=["latency_ms_p50"])
    colours = _run_colours(df["folder"].unique())
    several = df["folder"].nunique() > 1
    if len(timed):
        fig, ax = plt.subplots(figsize=(9, 6))
        batches = sorted(timed["batch_size"].unique())
        for (run, bs), group in timed.groupby(["folder", "batch_size"]):
            ax.scatter(group["macs"] * bs / 1e9, group["latency_ms_p50"], color=colours[run],
                       marker=MARKERS[batches.index(bs) % len(MARKERS)], label=f"{run}, batch {bs}" if several else f"batch {bs}")
        ax.set(xscale="log", yscale="log", xlabel="GMACs per forward (MACs x batch)", ylabel="median latency, ms")
        ax.margins(0.12)
        _log_ticks(ax)
        for _, r in timed.iterrows():
            _label(ax, r["model"] + (" (busy)" if _busy(r) else ""), r["macs"] * r["batch_size"] / 1e9, r["latency_ms_p50"])
        busy = timed[[_busy(r) for _, r in timed.iterrows()]]
        if len(busy):
            ax.scatter(busy["macs"] * busy["batch_size"] / 1e9, busy["latency_ms_p50"], s=160, facecolors="none",
                       edgecolors="red", label="timed busy")
        _legend(ax, fontsize=8)
        _save(fig, report, "macs_vs_latency", "MACs vs measured latency",
              "One point per model and batch size, log axes" + ("; colour: the run, marker: the batch size" if several else "")
              + ". Models off the common trend are where MACs mislead." + BUSY_CAPTION * bool(len(busy)))
        plt.close(fig)

        curves = [(key, g.sort_values("batch_size")) for key, g in timed.groupby(["folder", "model"], sort=False)
                  if g["batch_size"].nunique() > 1]
        if curves:
            fig, ax = plt.subplots(figsize=(9, 5))
            styles = {run: style for run, style in zip(sorted(colours), ("-", "--", ":", "-."))}
            model_colours = _run_colours(timed["model"].unique())  # a model keeps its colour across runs
            for (run, model), group in curves:
                ax.plot(group["batch_size"], group["throughput_img_s"], marker="o", linestyle=styles.get(run, "-"),
                        color=model_colours[model], label=f"{model} ({run})" if several else model)
            ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images / s")
            _log_ticks(ax)
            _legend(ax, fontsize=8, ncol=2)
            _save(fig, report, "throughput_vs_batch", "Throughput vs batch size",
                  "images/s = batch / median latency, per model" + (" and run (line style)" if several else "")
                  + "; a curve joins the batch sizes of one run only.")
            plt.close(fig)

        _roofline(plt, report, timed, colours, several)

    first = _ok(df).sort_values("batch_size").groupby(["folder", "model"], sort=False).head(1)
    metrics = [(c, label) for c, label in (("params", "parameters (M)"), ("macs", "GMACs / image"), ("acts", "activations (M) / image"),
                                            ("saved_act_bytes", "saved activations, MiB"), ("peak_mem_train_bytes", "peak train memory, MiB"),
                                            ("latency_ms_p50", "median latency, ms")) if c in first and first[c].notna().any()]
    if metrics and len(first):
        scale = {"params": 1e6, "macs": 1e9, "acts": 1e6, "saved_act_bytes": 2**20, "peak_mem_train_bytes": 2**20, "latency_ms_p50": 1}
        models = list(dict.fromkeys(first["model"]))
        runs = sorted(first["folder"].unique())
        height = 0.8 / len(runs)
        # Three panels a row, each with its own model names: at the page's 1100 px the labels stay about 11 px tall.
        cols = min(3, len(metrics))
        rows = math.ceil(len(metrics) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, rows * (0.2 * len(models) * len(runs) ** 0.5 + 1.2)),
                                 squeeze=False)
        for ax, (col, label) in zip(axes.flat, metrics):
            for k, run in enumerate(runs):
                part = first[first["folder"] == run].set_index("model").reindex(models)
                ax.barh([i + (k - (len(runs) - 1) / 2) * height for i in range(len(models))], part[col] / scale[col],
                        height=height, color=colours[run], label=run)
            ax.set_yticks(range(len(models)), models)
            ax.set_xlabel(label, fontsize=10)
            ax.tick_params(axis="y", labelsize=9)
            ax.invert_yaxis()
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        if several:
            _legend(axes.flat[0], fontsize=8)
        _save(fig, report, "zoo_overview", "Across the zoo",
              "At each model's smallest batch size in each run" + ("; one bar per run" if several else "") + ".")
        plt.close(fig)


BUSY_CAPTION = (" Marked busy: measured while other processes used over 10% of the CPU (host_busy); such a figure is"
                " slower than the machine can do, read it with care.")


def _busy(row) -> bool:
    return str(row.get("busy")) == "True"


def _log_ticks(ax) -> None:
    """Log axes with labelled ticks at 1, 2, 3 and 5 per decade: a range under a decade would otherwise show a
    single labelled tick."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)
        axis.set_minor_formatter(NullFormatter())


def _roofline(plt, report: Report, timed: pd.DataFrame, colours: dict, several: bool) -> None:
    """Achieved TFLOP/s against an estimated arithmetic intensity (convbench.measure.ceiling.intensity: an estimate, not a
    measurement), under the ceilings measured on each run's machine (`convbench ceiling`, recorded in its
    env.json): the compute peak of its dtype and the bandwidth line, and on a known GPU the datasheet's beside them."""
    import numpy as np
    import pandas as pd

    data = timed.dropna(subset=["achieved_tflops", "param_bytes", "acts"])
    if not len(data):
        return
    flops_per_byte = pd.Series([intensity(r["macs"], r["batch_size"], r["param_bytes"], r["acts"], r["dtype"])
                                for _, r in data.iterrows()], index=data.index, dtype=float)
    fig, ax = plt.subplots(figsize=(9, 6))
    for run, part in data.groupby("folder"):
        ax.scatter(flops_per_byte[part.index], part["achieved_tflops"], color=colours[run], label=run if several else None)
    ax.set(xscale="log", yscale="log", xlabel="FLOPs per byte (estimate)", ylabel="achieved TFLOP/s")
    ax.margins(0.12)
    xs = np.logspace(np.log10(max(flops_per_byte.min() / 3, 1e-3)), np.log10(flops_per_byte.max() * 3), 50)
    said = []
    for run in sorted(data["folder"].unique()):
        env = report.envs.get(run, {})
        ceiling, dtype = env.get("ceiling"), str(data[data["folder"] == run]["dtype"].iloc[0])
        if not ceiling or dtype not in ceiling.get("compute", {}):
            said.append(f"{run}: no measured ceiling in its env.json")
            continue
        peak, gbps = ceiling["compute"][dtype], ceiling["bandwidth"]
        where = f"{run}: " if several else ""
        ax.plot(xs, np.minimum(peak["value"], xs * gbps["value"] / 1e3), color=colours[run], linestyle="--", linewidth=1,
                label=f"{where}measured {dtype} peak {peak['value']:.3g} TFLOP/s, {gbps['value']:,.0f} GB/s")
        said.append(f"{where}{dtype} compute ceiling set by {peak['kernel']}, bandwidth by {gbps['kernel']}")
        sheet = ceiling.get("datasheet") or {}
        if dtype in sheet:
            ax.axhline(sheet[dtype], color="grey", linestyle=":", label=f"{where}datasheet {dtype} {sheet[dtype]:g} TFLOP/s")
    _log_ticks(ax)
    for (_, r), x in zip(data.iterrows(), flops_per_byte):
        _label(ax, f"{r['model']} b{r['batch_size']}", x, r["achieved_tflops"])
    _legend(ax, fontsize=8)
    caption = ("Arithmetic intensity is an estimate (weights read once, each conv/linear output written and read once); "
               "dashed: the ceilings measured on the run's machine (convbench ceiling). " + "; ".join(said) + ".")
    _save(fig, report, "roofline", "Roofline view", caption)
    plt.close(fig)


def _compare_figures(plt, report: Report, df: pd.DataFrame) -> None:
    variants = _ok(df)[lambda d: d["variant"] != d["baseline"]]
    if not len(variants):
        return
    device = "device_ratio" in variants and variants["device_ratio"].notna().any()
    bars = [("claimed", variants["claimed_ratio"].fillna(0), None), ("counted (MACs)", variants["counted_ratio"], None)]
    lo = (variants["measured_ratio"] - variants["ratio_ci_low"]).clip(lower=0)
    hi = (variants["ratio_ci_high"] - variants["measured_ratio"]).clip(lower=0)
    bars.append(("measured latency (95% CI)", variants["measured_ratio"], [lo, hi]))
    if device:  # the GPU's own time: what a launch-bound latency hides
        bars.append(("device time (GPU busy)", variants["device_ratio"].fillna(0), None))
    height = 0.8 / len(bars)
    several = variants["folder"].nunique() > 1
    labels = [f"{r['case']}\n{r['variant']} (b{r['batch_size']}{', ' + str(r['folder']) if several else ''})"
              + (" [busy]" if _busy(r) else "") for _, r in variants.iterrows()]
    fig, ax = plt.subplots(figsize=(10, (0.15 + 0.15 * len(bars)) * len(variants) + 1.5))
    y = list(range(len(variants)))
    for k, (label, values, err) in enumerate(bars):
        ax.barh([i + (k - (len(bars) - 1) / 2) * height for i in y], values, height=height, xerr=err, label=label)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("variant / baseline (log)")
    _legend(ax, fontsize=8)
    caption = "Cost of each variant relative to its case's baseline; no claimed bar where the paper gives no figure."
    if device:
        caption += (" Device time is the GPU's busy time per forward; where a side is launch-bound (GPU busy under 50%),"
                    " it, not the latency, tells the design's cost.")
    if any(_busy(r) for _, r in variants.iterrows()):
        caption += BUSY_CAPTION
    _save(fig, report, "compare_ratios", "Claimed vs counted vs measured", caption)
    plt.close(fig)


def _train_figures(plt, report: Report, steps: pd.DataFrame) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    several = steps["folder"].nunique() > 1
    for (folder, run, nproc), group in steps.groupby(["folder", "run", "nproc"], sort=False):
        label = (run if nproc == 1 else f"{run} x{nproc}") + (f" ({folder})" if several else "")
        ax_loss.plot(group["step"], group["loss"], label=label)
        ax_acc.plot(group["step"], group["batch_acc"].rolling(5, min_periods=1).mean(), label=label)
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    ax_acc.set(xlabel="step", ylabel="batch accuracy (5-step mean)")
    _legend(ax_loss, fontsize=7)
    _save(fig, report, "training_curves", "Training loss and accuracy", "Per step, from train_steps.csv.")
    plt.close(fig)


TABLE_COLUMNS = {
    "profile": ["folder", "model", "batch_size", "device_name", "dtype", "status", "params", "macs", "saved_act_bytes",
                "latency_ms_p50", "latency_ms_iqr", "throughput_img_s", "host_busy", "busy", "peak_mem_train_bytes", "note"],
    "compare": ["folder", "comparison", "case", "variant", "batch_size", "mode", "claimed_ratio", "counted_ratio",
                "measured_ratio", "ratio_ci_low", "ratio_ci_high", "device_ratio", "gpu_busy", "host_busy", "busy", "verdict"],
    "train": ["folder", "run", "nproc", "data", "steps", "step_ms_p50", "images_per_s", "scaling_efficiency", "host_busy",
              "busy", "first_loss", "final_loss", "heldout_acc_start", "heldout_acc", "status", "note"],
}


def _result_folders(root: Path) -> dict[Path, Path]:
    """Folders below `root` holding a profile or compare run, by their path relative to root."""
    return {p.parent.relative_to(root): p.parent for name in ("profile.csv", "compare.csv") for p in root.rglob(name)}


def _diff_figures(plt, report: Report, old_root: Path) -> None:
    """Per matched row, NEW / OLD with its interval: one figure per pair of runs found at the same place."""
    old_runs, new_runs = _result_folders(old_root), _result_folders(report.folder)
    pairs = [(rel, old_runs[rel], new_runs[rel]) for rel in sorted(new_runs) if rel in old_runs]
    if not pairs:
        raise UserError(f"{old_root} and {report.folder} hold no runs at the same place to compare")
    for rel, old, new in pairs:
        result = diff(old, new)
        rows = result.rows.dropna(subset=["ratio"])
        if rows.empty:
            continue
        labels = [" ".join(str(r[k]) for k in result.keys[:3]) for _, r in rows.iterrows()]
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
        y = range(len(rows))
        has_ci = rows["ci_low"].notna()
        lower = (rows["ratio"] - rows["ci_low"]).where(has_ci, 0)
        upper = (rows["ci_high"] - rows["ratio"]).where(has_ci, 0)
        colors = ["tab:red" if m == "*" and r > 1 else "tab:green" if m == "*" else "tab:gray"
                  for m, r in zip(rows["mark"], rows["ratio"])]
        ax.errorbar(rows["ratio"], list(y), xerr=[lower, upper], fmt="none", ecolor="black", capsize=2)
        ax.scatter(rows["ratio"], list(y), c=colors, zorder=3)
        ax.axvline(1, color="black", lw=0.8)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.set_xlabel(f"{result.metric}: new / old (95% bootstrap interval)")
        name = "diff_" + ("_".join(rel.parts) or "run")
        caption = (f"matched on {', '.join(result.keys)}; red: significantly higher, green: significantly lower, grey: no "
                   f"significant change. Geometric mean {result.geomean:.3f}x. " + " ".join(result.notes))
        _save(fig, report, name, f"What changed: {old} -> {new}", caption)
        plt.close(fig)
        report.tables.append((f"{old} -> {new}: every matched row", result.rows))


def make_report(folder: Path | str, against: Path | str | None = None, out: Path | str | None = None) -> Report:
    """The report of `folder`, written into `out` (default: `folder` itself); with `against` (an older folder),
    also what changed from it to `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    if against is not None and not Path(against).is_dir():
        raise UserError(f"{against} is not a folder")
    found = {name: _read_all(folder, f"{name}.csv") for name in ("profile", "compare", "train", "train_steps")}
    if all(v is None for v in found.values()):
        raise UserError(f"{folder} holds no convbench results (profile.csv, compare.csv or train.csv)")
    target = Path(out) if out is not None else folder
    try:
        folders.prove_writable(target)
    except UserError as exc:
        raise UserError(f"{exc}; write the report elsewhere with --out DIR") from None
    plt = _pyplot()
    report = Report(folder, target)
    for env_file in _found(folder, ENV_FILE):
        where = str(env_file.parent.relative_to(folder)) if env_file.parent != folder else "."
        report.envs[where] = reader.read_env(env_file.parent) or {"note": f"{env_file} could not be read"}
    if found["profile"] is not None:
        _profile_figures(plt, report, found["profile"])
    if found["compare"] is not None:
        _compare_figures(plt, report, found["compare"])
    if found["train_steps"] is not None and len(found["train_steps"]):
        _train_figures(plt, report, found["train_steps"])
    if against is not None:
        _diff_figures(plt, report, Path(against))
    for name in ("profile", "compare", "train"):
        if found[name] is not None:
            table = found[name][[c for c in TABLE_COLUMNS[name] if c in found[name]]]
            report.tables.append((name, table.dropna(axis=1, how="all")))  # no GPU-only columns on a CPU run
    _write_html(report)
    _write_markdown(report)
    return report


ENV_SUMMARY = (("device", None), ("cores", "cpu_count"), ("torch", "torch"), ("cuda", "cuda"), ("convbench", "convbench"),
               ("commit", "git_commit"), ("created", "created"))


def env_table(envs: dict[str, dict]) -> pd.DataFrame:
    """One row per run: the machine and software that produced it, in a few columns."""
    import pandas as pd
    rows = []
    for where, env in envs.items():
        gpu = env.get("gpu")
        device = gpu.get("name") if isinstance(gpu, dict) else None
        row = {"run": where, "device": device or env.get("cpu") or env.get("note", "")}
        row.update({label: env.get(key) for label, key in ENV_SUMMARY if key})
        if env.get("shard"):
            row["shard"] = env["shard"]
        rows.append(row)
    return pd.DataFrame(rows).dropna(axis=1, how="all")


def _cell(value) -> tuple[str, str]:
    """(css class, text): numbers right-aligned with thousands separators, text left-aligned."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "num", ""
    if isinstance(value, bool):
        return "text", str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return "num", f"{int(value):,}"
    if isinstance(value, float):
        return "num", f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "text", html.escape(str(value))


def table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.itertuples(index=False):
        body.append("<tr>" + "".join("<td class='{}'>{}</td>".format(*_cell(v.item() if hasattr(v, "item") else v))
                                     for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 8px}"
         "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
         "td.num{text-align:right;font-variant-numeric:tabular-nums}td.text{text-align:left}th{text-align:center}"
         "img{max-width:100%;height:auto}pre{font-size:11px;white-space:pre-wrap}.scroll{overflow-x:auto}")


def _write_html(report: Report) -> None:
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'><title>convbench report</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>convbench report: {html.escape(str(report.folder.resolve()))}</h1>"]
    for f in report.figures:
        data = base64.b64encode((report.out / f"{f.name}.png").read_bytes()).decode()
        parts.append(f"<h2>{html.escape(f.title)}</h2><img alt='{f.name}' src='data:image/png;base64,{data}'>"
                     f"<p>{html.escape(f.caption)}</p>")
    for name, table in report.tables:
        parts.append(f"<h2>{html.escape(name)}</h2><div class='scroll'>{table_html(table)}</div>")
    parts.append("<h2>Environment</h2>")
    if report.envs:
        parts.append(f"<div class='scroll'>{table_html(env_table(report.envs))}</div>")
    for where, env in report.envs.items():
        parts.append(f"<details class='env'><summary>{html.escape(where)}: env.json</summary>"
                     f"<pre>{html.escape(json.dumps(env, indent=1, default=str))}</pre></details>")
    parts.append("</body></html>")
    write_atomically(report.html_path, "\n".join(parts))


def _write_markdown(report: Report) -> None:
    lines = [f"# convbench report: {report.folder.resolve()}", ""]
    for f in report.figures:
        lines += [f"## {f.title}", "", f"![{f.name}]({f.name}.png)", "", f.caption, ""]
    for name, table in report.tables:
        lines += [f"## {name}", "", to_markdown(table)]
    if report.envs:
        lines += ["## Environment", "", to_markdown(env_table(report.envs))]
    write_atomically(report.out / "report.md", "\n".join(lines))

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convbench.cli.app import app, console
from convbench.cli.fit import plural
from convbench.analysis.report import make_report


def print_report(folder: Path, against: Path | None = None, out: Path | None = None) -> None:
    report = make_report(folder, against, out)
    console.print(f"report: {report.html_path} ({plural(len(report.figures), 'figure')}, {plural(len(report.tables), 'table')}), "
                  f"PNGs and report.md in {report.out}", highlight=False)


@app.command("report")
def report_command(
    folder: Annotated[Path, typer.Argument(help="A results folder (searched recursively); with two, the OLD one.")],
    new: Annotated[Optional[Path], typer.Argument(help="A newer folder: report it, with what changed since FOLDER.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the report here (default: into the folder read).")] = None,
) -> None:
    """Plots, tables and the environment of a results folder as a self-contained HTML page; given OLD and NEW,
    the report of NEW with the ratios NEW / OLD and their intervals."""
    if new is None:
        print_report(folder, out=out)
    else:
        print_report(new, against=folder, out=out)

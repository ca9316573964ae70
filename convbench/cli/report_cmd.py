from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convbench.cli.app import app, console
from convbench.report import make_report


def print_report(folder: Path) -> None:
    report = make_report(folder)
    console.print(f"report: {report.html_path} ({len(report.figures)} figures, {len(report.tables)} tables), "
                  f"PNGs and report.md in {folder}", highlight=False)


@app.command("report")
def report_command(folder: Annotated[Path, typer.Argument(help="A results folder (searched recursively).")]) -> None:
    """Plots, tables and the environment of a results folder as a self-contained HTML page."""
    print_report(folder)

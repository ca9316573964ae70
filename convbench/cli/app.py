from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

import convbench

app = typer.Typer(
    name="convbench",
    help="Parameters, MACs, memory and speed of the classic ImageNet CNNs and the block designs their papers argue about.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or logged output gets room for a full results table instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"convbench {convbench.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """convbench: count, time and compare convolutional networks."""

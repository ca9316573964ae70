from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from convbench._version import __version__

app = typer.Typer(
    name="convbench",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    help="Parameters, MACs, memory and speed of the classic ImageNet CNNs and the block designs their papers argue about.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def error_line(message: str) -> None:
    """One line on stderr, as every user mistake is said. Plain write: a console would wrap a long message at the
    terminal width."""
    sys.stderr.write(" ".join(message.split()) + "\n")
    sys.stderr.flush()


def terminal_width() -> int:
    """$COLUMNS when set, else the terminal's width; piped or logged output (no terminal to fit) gets 120."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else 120


def _version(value: bool) -> None:
    if value:
        console.print(f"convbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """convbench: count, time and compare convolutional networks."""


class LazyProgress:
    """A transient progress display that appears only once work has started, so that an early user error
    prints as a clean single line instead of after the display's teardown."""

    def __init__(self, *columns) -> None:
        from rich.progress import Progress

        # Only on a terminal: in logs and pipes a progress bar is noise (and leaves a stray blank line).
        self._progress = Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal)
        self._task = None

    def update(self, **fields) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(fields.pop("description", ""), total=fields.pop("total", None))
        self._progress.update(self._task, **fields)

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._progress.stop()

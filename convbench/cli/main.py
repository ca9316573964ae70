"""The `convbench` entry point: every user mistake ends as one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import sys
from typing import Sequence

import typer

from convbench.cli import (baseline_cmd, ceiling_cmd, compare_cmd, diff_cmd, gate_cmd, list_cmd, merge_cmd, profile_cmd,  # noqa: F401
                           report_cmd, selfcheck_cmd, train_cmd)  # each registers its command
from convbench.cli.app import app, console, error_line, terminal_width
from convbench import interrupts
from convbench.errors import UserError, UserInterrupt

__all__ = ["app", "main"]


def _usage_error_types() -> tuple[type[BaseException], ...]:
    # Recent Typer vendors Click and roots its errors in TyperException; older Typer raises Click's own.
    types: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        from click.exceptions import ClickException
        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: every user mistake ends as one line on stderr and a non-zero exit, never a traceback."""
    # Read at every call: the width of this terminal now (tests and scripts set COLUMNS per call).
    console.width = terminal_width()
    previous = interrupts.install()
    try:
        _run(argv)
    finally:
        interrupts.restore(previous)  # called in-process (tests, a script): the caller's handlers come back


def _run(argv: Sequence[str] | None) -> None:
    # A path that is not UTF-8 (a folder named in another encoding) is printed escaped, never a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = app(args=args, prog_name="convbench", standalone_mode=False)
    except UserInterrupt as exc:
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except UserError as exc:
        for line in str(exc).split("\n"):  # several refused --arch parts: one line each
            error_line(f"error: {line}")
        sys.exit(exc.exit_code)
    except _usage_error_types() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `convbench`: the help is the answer
            console.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        message = " ".join(exc.format_message().split())
        error_line(f"error: {message} (see --help)")
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt) as exc:
        error_line("interrupted")
        sys.exit(128 + getattr(exc, "signal_number", 2))
    number = interrupts.received()
    if number is not None:  # Typer turns an interrupt it sees into a silent exit 130: said here, with its own code
        command = next((a for a in args if not a.startswith("-")), "")
        error_line(f"interrupted: convbench {command} stopped before it finished; no file it writes is left half-written")
        sys.exit(128 + number)
    sys.exit(code if isinstance(code, int) else 0)

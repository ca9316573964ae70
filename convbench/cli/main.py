"""The `convbench` entry point: every user mistake ends as one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import signal
import sys
from typing import Sequence

import typer

from convbench.cli import (baseline_cmd, ceiling_cmd, compare_cmd, diff_cmd, gate_cmd, list_cmd, merge_cmd, profile_cmd,  # noqa: F401
                           report_cmd, selfcheck_cmd, train_cmd)  # each registers its command
from convbench.cli.app import app, console, terminal_width
from convbench.errors import Terminated, UserError, UserInterrupt

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


def _one_line(message: str) -> None:
    # Plain write: a console would wrap a long message at the terminal width.
    sys.stderr.write(" ".join(message.split()) + "\n")
    sys.stderr.flush()


def _terminate(signal_number: int, _frame) -> None:
    raise Terminated(signal_number)


def _on_termination() -> None:
    """SIGTERM (as `timeout`, Slurm and a CI runner send) and SIGHUP (a closed terminal) end a run the way Ctrl-C
    does: the finished rows and every writer done, the children stopped, exit 128 + the signal's number."""
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) in (signal.SIG_DFL, None):
            signal.signal(number, _terminate)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: every user mistake ends as one line on stderr and a non-zero exit, never a traceback."""
    # Read at every call: the width of this terminal now (tests and scripts set COLUMNS per call).
    console.width = terminal_width()
    _on_termination()
    # A path that is not UTF-8 (a folder named in another encoding) is printed escaped, never a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="convbench", standalone_mode=False)
    except UserInterrupt as exc:
        _one_line(str(exc))
        sys.exit(exc.exit_code)
    except UserError as exc:
        _one_line(f"error: {exc}")
        sys.exit(exc.exit_code)
    except _usage_error_types() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `convbench`: the help is the answer
            console.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        message = " ".join(exc.format_message().split())
        _one_line(f"error: {message} (see --help)")
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt) as exc:
        _one_line("interrupted")
        sys.exit(128 + getattr(exc, "signal_number", 2))
    sys.exit(code if isinstance(code, int) else 0)

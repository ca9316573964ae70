"""The `convbench` command. Each sub-command module registers itself on the shared app."""
from __future__ import annotations

import sys
from typing import Sequence

import typer

from convbench.cli import list_cmd  # noqa: F401  (registers `list`)
from convbench.cli.app import app, console, err_console
from convbench.errors import UserError

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
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="convbench", standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except _usage_error_types() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `convbench`: the help is the answer
            console.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        message = " ".join(exc.format_message().split())
        err_console.print(f"error: {message} (see --help)", markup=False, highlight=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

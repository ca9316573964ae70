from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convbench.analysis import baseline
from convbench.cli.app import app, console
from convbench.errors import UserError


@app.command("baseline")
def baseline_command(
    update: Annotated[bool, typer.Option("--update", help="Accept the current counts as the new baseline.")] = False,
    file: Annotated[Path, typer.Option("--file", help="Baseline JSON.")] = baseline.DEFAULT_FILE,
    arch: Annotated[str, typer.Option("--arch", help="Check only these zoo models (pattern or comma list).")] = "all",
) -> None:
    """Check (or with --update, accept) the exact counts of every zoo model against the committed baseline."""
    if update and arch != "all":
        raise UserError("--update rewrites the whole baseline; leave out --arch")
    current = baseline.compute_static(arch)
    if update:
        baseline.save(current, file)
        console.print(f"baseline of {len(current)} models written to {file}", highlight=False)
        return
    try:
        old = baseline.load(file)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read baseline {file}: {exc}; create it with `convbench baseline --update`") from None
    if arch != "all":
        old = {name: counts for name, counts in old.items() if name in current}
    changes = baseline.diff(old, current)
    if not changes:
        console.print(f"{len(current)} models match {file} exactly", highlight=False)
        return
    console.print(baseline.format_diff(changes), markup=False, highlight=False)
    console.print(f"{len(changes)} differences; if intended, accept them with `convbench baseline --update`", highlight=False)
    raise typer.Exit(1)

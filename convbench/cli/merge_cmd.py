from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convbench.analysis.merge import ROWS_FILE, merge
from convbench.cli import compare_cmd, profile_cmd, train_cmd
from convbench.cli.app import app, console
from convbench.cli.sweep import exit_code
from convbench.cli.sweep import show as show_rows
from convbench.cli.tables import print_profile
from convbench.errors import UserError


def show(kind: str, frame, where: str) -> None:
    """A merged sweep on screen, as its own command prints it."""
    if kind == "profile":
        timed = "latency_ms_p50" in frame and frame["latency_ms_p50"].notna().any()
        show_rows(frame, where, lambda f, w: print_profile(console, f, "all" if timed else "static", w), profile_cmd.BUSY_LABEL)
    elif kind == "compare":
        show_rows(frame, where, compare_cmd.print_table, compare_cmd.BUSY_LABEL)
    else:
        show_rows(frame, where, lambda f, w: train_cmd.print_train(f, 10), train_cmd.BUSY_LABEL)


@app.command("merge")
def merge_command(
    folders: Annotated[list[Path], typer.Argument(help="Shard folders, or folders that hold them (DIR/shards/I-of-N).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The merged folder (default: the one folder given, when its shards are below it).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Turn what a shard did not measure into error rows, and leave out a damaged or repeated row, instead of refusing.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 for any row not ok.")] = False,
) -> None:
    """One results folder from the shards of one sweep, in the order one process would have written it."""
    if out is None:
        if len(folders) == 1 and (folders[0] / "shards").is_dir():
            out = folders[0]
        else:
            raise UserError("merge needs --out DIR, unless it is given one folder that holds its shards in DIR/shards/")
    merged = merge(folders, out, overwrite=overwrite or out in folders, partial=partial)
    for line in merged.dropped:  # --partial: each damaged or repeated row left out, said where it was
        console.print(f"left out: {line}", style="yellow", highlight=False, soft_wrap=True)
    where = f"{merged.out}/{ROWS_FILE[merged.kind]}"
    show(merged.kind, merged.frame, where)
    console.print(f"merged {len(merged.shards)} shards of a {merged.kind} sweep"
                  + (f"; {len(merged.filled)} rows their shard did not measure are error rows" if merged.filled else ""),
                  highlight=False)
    raise typer.Exit(exit_code(merged.frame, strict))

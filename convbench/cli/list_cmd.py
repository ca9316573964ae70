from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from convbench.cli.app import app, console
from convbench.zoo import zoo_table


@app.command("list")
def list_command(
    pattern: Annotated[Optional[str], typer.Argument(help="Name, fnmatch pattern ('resnet*') or comma list; all by default.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the zoo: family, input size, parameters and MACs per image (conv + linear, eval forward)."""
    rows = zoo_table(pattern)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"convbench zoo ({len(rows)} models)", title_justify="left")
    cells = [[r["name"], r["family"], str(r["input_size"]), f"{r['params']:,}", f"{r['macs'] / 1e9:.3f}", r["notes"]] for r in rows]
    for i, (column, justify) in enumerate((("model", "left"), ("family", "left"), ("input", "right"),
                                           ("params", "right"), ("GMACs", "right"), ("notes", "left"))):
        is_notes = column == "notes"
        # The figures never shrink or wrap; the notes column wraps in what width is left.
        width = max([len(column)] + [len(c[i]) for c in cells])
        table.add_column(column, justify=justify, no_wrap=not is_notes, min_width=None if is_notes else width)
    for c in cells:
        table.add_row(*c)
    console.print(table)
    console.print("MACs: multiply-accumulates per image in conv and linear layers (1 MAC = 2 FLOPs), eval forward.", style="dim")

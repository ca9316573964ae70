from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from convbench.cli import options
from convbench.cli.app import app, console
from convbench.cli.fit import Column, left_out_line, plural, say, table
from convbench.cli.tables import input_cell
from convbench.measure.zoo_table import zoo_table


@app.command("list")
def list_command(
    pattern: Annotated[Optional[str], typer.Argument(help="Name, fnmatch pattern ('resnet*') or comma list; all by default. "
                                                          "timm:PATTERN or torchvision:PATTERN lists the installed library's models.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    all_matching: options.AllMatching = False,
) -> None:
    """List the zoo, or timm's and torchvision's models: family, input size, parameters and MACs per image (conv +
    linear, eval forward, at each model's own input size)."""
    rows = zoo_table(pattern, all_matching)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if rows and "paper" not in rows[0]:
        print_library(rows)
        return
    columns = [Column("model", 0, "left", [r["name"] for r in rows]),
               Column("family", 3, "left", [r["family"] for r in rows]),
               Column("input", 2, cells=[str(r["input_size"]) for r in rows]),
               Column("params", 0, cells=[f"{r['params']:,}" for r in rows]),
               Column("GMACs", 0, cells=[f"{r['macs'] / 1e9:.3f}" for r in rows]),
               Column("paper", 1, "left", [r["paper"].split(",")[0] for r in rows]),
               Column("notes", 4, "left", [r["notes"] for r in rows])]
    t, left_out = table(f"convbench zoo ({plural(len(rows), 'model')})", columns, console.width)
    console.print(t)
    say(console, left_out_line(left_out, "convbench list --json"))
    say(console, "MACs: multiply-accumulates per image in conv and linear layers (1 MAC = 2 FLOPs), eval forward; "
                 "paper: its first author and year (the title: --json).")


def print_library(rows: list[dict]) -> None:
    def cell(value: int | None, text: str) -> str:
        return text if value is not None else "-"
    columns = [Column("model", 0, "left", [r["name"] for r in rows]),
               Column("family", 3, "left", [r["family"] for r in rows]),
               Column("input", 1, cells=[input_cell(r["input_shape"]) for r in rows]),
               Column("params", 0, cells=[cell(r["params"], f"{r['params'] or 0:,}") for r in rows]),
               Column("GMACs", 0, cells=[cell(r["macs"], f"{(r['macs'] or 0) / 1e9:.3f}") for r in rows])]
    t, left_out = table(f"{plural(len(rows), 'model')}, each at its own input size", columns, console.width)
    console.print(t)
    say(console, left_out_line(left_out, "convbench list --json"))
    for r in rows:
        if r["error"]:
            say(console, f"{r['name']}: not counted: {r['error']}")
    say(console, "MACs: multiply-accumulates per image in conv and linear/matmul ops (1 MAC = 2 FLOPs), eval forward; "
                 "input: where each size comes from is in --json (input_from).")

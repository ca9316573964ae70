from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from convbench.run import engines
from convbench.cli.app import app, console
from convbench.run.config import parse_list
from convbench.results.folders import prove_writable
from convbench.cli.fit import kept
from convbench.errors import UserError, UserInterrupt
from convbench.files import write_atomically
from convbench.results.writers import to_markdown, write_json
from convbench.selfcheck.battery import Check, run_selfcheck
from convbench.selfcheck.battery import validate

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@app.command("selfcheck")
def selfcheck_command(
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    quick: Annotated[bool, typer.Option("--quick", help="A shorter battery (under a minute on a 2-core CPU).")] = False,
    check: Annotated[Optional[str], typer.Option("--check", help="Comma list of checks to run (default: all).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for selfcheck.json and selfcheck.md.")] = Path("runs/selfcheck"),
    format: Annotated[str, typer.Option("--format", help="table, json or md (what is printed).")] = "table",
) -> None:
    """Can the numbers be trusted here? Checks the machine and convbench's timing, memory, counting, modes,
    isolation and training protocols; exits 1 when a check fails."""
    if format not in ("table", "json", "md"):
        raise UserError(f"unknown --format {format!r}; choose table, json or md")
    only = parse_list(check, "--check") if check else None
    validate(device, only)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: this rank's GPU, and a folder of its own
        device = engines.local_device(device)
        out = out / f"rank-{os.environ.get('RANK', '0')}"
    prove_writable(out)
    if format == "table":
        console.print(f"convbench selfcheck on {device}{' (quick)' if quick else ''}", highlight=False)

    def on_check(c: Check) -> None:
        if format == "table":
            console.print(f"  {c.name:<15} [{_STYLE[c.status]}]{c.status:<4}[/] {c.figure}", highlight=False)
            for extra in filter(None, [f"tolerance: {c.tolerance}" if c.tolerance else "", c.note]):
                console.print(f"  {'':<20} [dim]{extra}[/]", highlight=False)

    result = run_selfcheck(device, quick, only, on_check=on_check)
    payload = {"checks": [c.__dict__ for c in result.checks], "seconds": round(result.seconds, 1), "environment": result.env}
    write_json(out / "selfcheck.json", payload)
    markdown = f"# convbench selfcheck on {device}\n\n" + to_markdown(result.frame)
    write_atomically(out / "selfcheck.md", markdown)
    if result.interrupted:
        raise UserInterrupt(f"interrupted: {kept(len(result.checks), 'finished check', out / 'selfcheck.json')}",
                            result.interrupted)
    counts = {s: sum(c.status == s for c in result.checks) for s in ("pass", "warn", "fail", "skip")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if format == "json":
        typer.echo(json.dumps(payload, indent=1, default=str))
    elif format == "md":
        typer.echo(markdown)
    else:
        console.print(f"{len(result.checks)} checks in {result.seconds:.0f} s: {summary} -> {out}/selfcheck.json", highlight=False)
    if result.failed:
        raise typer.Exit(1)

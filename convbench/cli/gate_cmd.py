from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli.app import LazyProgress, app, console
from convbench.run.config import parse_list, parse_percent
from convbench.gate.ab import GateConfig, run_gate


@app.command("gate")
def gate_command(
    base: Annotated[Optional[str], typer.Option(help="Base revision (default: the last commit that changed the record folder).")] = None,
    against: Annotated[str, typer.Option(help="base: time the base now, paired with the candidate (shared runners); "
                                              "record: the committed record, only on the machine kind that saved it.")] = "base",
    fail_above: Annotated[str, typer.Option("--fail-above", help="Fail when a benchmark is slower than the base by more than this.")] = "25%",
    repeat: Annotated[int, typer.Option(help="Passes, each with a fresh pair of worker processes; a regression must show in every one.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N]: the device the cases run on.")] = "cpu",
    cases: Annotated[str, typer.Option(help="Module with gate_cases(device); its top folder goes to both sides.")] = "suites.cases",
    source: Annotated[str, typer.Option(help="Comma list of the paths taken from the base revision (the code under test).")] = "convbench",
    select: Annotated[Optional[str], typer.Option("--select", "-k", help="Only benchmarks whose name contains this.")] = None,
    prove: Annotated[Optional[str], typer.Option(help="Then slow the benchmarks whose name contains this 2x and check the gate fails exactly them.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for gate.csv and gate.md.")] = Path("runs/gate"),
    repo: Annotated[Path, typer.Option(help="The git checkout holding the cases and the code.")] = Path("."),
) -> None:
    """Latency regression gate: the candidate against a base, timed in lockstep on this machine."""
    config = GateConfig(repo=repo, base=base, against=against, cases=cases, sources=parse_list(source), device=device,
                        fail_above=parse_percent(fail_above, "--fail-above"), repeat=repeat, select=select, prove=prove, out=out)

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        result = run_gate(config, say=say, progress=lambda name: progress.update(description=name))
    raise typer.Exit(result.exit_code)

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from convbench.cli import options
from convbench.cli.app import LazyProgress, app, console
from convbench.cli.project import setting
from convbench.gate.ab import DEFAULT_FAIL_ABOVE, DEFAULT_TIMEOUT, MODEL_ROUNDS, GateConfig, run_gate
from convbench.run.config import parse_input, parse_int_list, parse_list, parse_percent


@app.command("gate")
def gate_command(
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help="Models to gate: package.module:function (each side "
                                                                     "imports it from its own tree), zoo names or timm:NAME / "
                                                                     "torchvision:NAME, a comma list "
                                                                     "(default: [tool.convbench] arch, else convbench's suites).")] = None,
    batch_size: Annotated[Optional[str], typer.Option("--batch-size", "-b", help="Comma list of batch sizes for --arch.")] = None,
    input_size: options.InputSize = None,
    input_shape: options.InputShape = None,
    base: Annotated[Optional[str], typer.Option(help="Base revision (default: the last commit that changed the record "
                                                     "folder, else the merge base with the default branch).")] = None,
    against: Annotated[str, typer.Option(help="base: time the base now, paired with the candidate (shared runners); "
                                              "record: the committed record, only on the machine kind that saved it.")] = "base",
    fail_above: Annotated[Optional[str], typer.Option("--fail-above", help="Fail when a benchmark is slower than the base by more "
                                                                           "than this (default 15% in time, 1% in instructions).")] = None,
    measure: Annotated[Optional[str], typer.Option(help="time: paired rounds on the clock (the default); instructions: "
                                                        "instructions per call counted by valgrind's callgrind, exact "
                                                        "however busy the runner is.")] = None,
    repeat: Annotated[Optional[int], typer.Option(help="Passes, each with a fresh pair of worker processes; a regression must show "
                                                       "in every one (default 2).")] = None,
    rounds: Annotated[Optional[int], typer.Option(help=f"Paired rounds of each --arch case per pass, before the adaptive ones "
                                                       f"(default {MODEL_ROUNDS}).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda[:N]: the device the cases run on.")] = None,
    cases: Annotated[Optional[str], typer.Option(help="A module with gate_cases(device) (convbench.bench cases) instead of "
                                                      "--arch; its top folder goes to both sides.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Comma list of the paths taken from the base revision (default: the "
                                                       "packages --arch imports, else convbench).")] = None,
    select: Annotated[Optional[str], typer.Option("--select", "-k", help="Only benchmarks whose name contains this.")] = None,
    prove: Annotated[Optional[str], typer.Option(help="Then slow the benchmarks whose name contains this and check the gate "
                                                      "fails exactly them.")] = None,
    prove_factor: Annotated[Optional[float], typer.Option("--prove-factor", help="How much --prove slows them (default 2).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds one worker request (time) or one counted case "
                                                          "(instructions) may take before it is stopped (default 600 and 900).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for gate.csv (every pass of every benchmark) and gate.md.")] = Path("runs/gate"),
    repo: Annotated[Path, typer.Option(help="The git checkout holding the code and the cases.")] = Path("."),
) -> None:
    """Latency regression gate: the candidate against a base, timed in lockstep on this machine."""
    chosen_arch = setting("arch", arch) if cases is None else None
    chosen_measure = str(setting("measure", measure, "time"))
    default_limit = f"{DEFAULT_FAIL_ABOVE.get(chosen_measure, 0.15):.0%}"
    chosen_source = setting("source", source)
    config = GateConfig(
        repo=repo, base=setting("base", base), against=against, cases=cases, arch=chosen_arch,
        batch_sizes=parse_int_list(str(setting("batch-size", batch_size, "1")), "--batch-size"),
        input_shape=_shape(parse_input(input_size, setting("input-shape", input_shape))),
        sources=parse_list(chosen_source, "--source") if chosen_source else None,
        device=setting("device", device, "cpu"),
        fail_above=parse_percent(str(setting("fail-above", fail_above, default_limit)), "--fail-above"), measure=chosen_measure,
        repeat=int(setting("repeat", repeat, 2)), rounds=int(setting("rounds", rounds, MODEL_ROUNDS)), select=select,
        prove=prove, prove_factor=float(setting("prove-factor", prove_factor, 2.0)), out=out,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT.get(chosen_measure, DEFAULT_TIMEOUT["time"]))

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    with LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        result = run_gate(config, say=say, progress=lambda name: progress.update(description=name))
    raise typer.Exit(result.exit_code)


def _shape(size: int | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    return (3, size, size) if isinstance(size, int) else size

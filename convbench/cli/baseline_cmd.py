from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convbench.analysis import baseline
from convbench.cli import options
from convbench.cli.app import app, console
from convbench.cli.fit import plural
from convbench.cli.project import setting
from convbench.run.config import parse_input
from convbench.zoo.specs import resolve_models


@app.command("baseline")
def baseline_command(
    update: Annotated[bool, typer.Option("--update", help="Accept the current counts: write them into the file, "
                                                           "keeping every other model's entry.")] = False,
    file: Annotated[Optional[Path], typer.Option("--file", help="Baseline JSON (default: [tool.convbench] baseline, "
                                                                f"else {baseline.DEFAULT_FILE}).")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help="Zoo names, patterns, timm:NAME, torchvision:NAME or "
                                                                     "package.module:function (default: [tool.convbench] "
                                                                     "arch, else every zoo model).")] = None,
    all_matching: options.AllMatching = False,
    input_size: options.InputSize = None,
    input_shape: options.InputShape = None,
    output: options.Output = None,
) -> None:
    """Check (or with --update, accept) exact params, MACs, activations and saved bytes against a committed baseline."""
    path = Path(setting("baseline", str(file) if file else None, str(baseline.DEFAULT_FILE)))
    chosen = setting("arch", arch, "all")
    shape = parse_input(input_size, setting("input-shape", input_shape))
    resolve_models(chosen, shape, all_matching=all_matching)  # checked before the file is read or anything counted
    existing = baseline.load(path) if path.exists() or not update else {}  # a file that is not a baseline: refused, kept
    current = baseline.compute_static(chosen, shape, setting("output", output), all_matching=all_matching)
    if update:
        written, kept = baseline.update(current, path)
        console.print(f"baseline: {plural(written, 'model')} written to {path}"
                      + (f", {plural(kept, 'other model')} kept as they were" if kept else ""), highlight=False, soft_wrap=True)
        return
    old = {name: counts for name, counts in existing.items() if name in current or chosen == "all"}
    changes = baseline.diff(old, current)
    if not changes:
        console.print(f"{plural(len(current), 'model')} match {path} exactly", highlight=False, soft_wrap=True)
        return
    console.print(baseline.format_diff(changes), markup=False, highlight=False, soft_wrap=True)
    accept = "convbench baseline --update" + (f" --arch {chosen}" if chosen != "all" else "") + (f" --file {path}" if file else "")
    console.print(f"{plural(len(changes), 'difference')}; if intended, accept them with `{accept}`", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convbench.measure.ceiling import obtain
from convbench.cli.app import app, console, err_console
from convbench.cli.fit import Column, say, table
from convbench.run.config import parse_list
from convbench.results.folders import prove_writable
from convbench.results.writers import write_json


@app.command("ceiling")
def ceiling_command(
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="Comma list of fp32, bf16, fp16 (CUDA).")] = "fp32,bf16",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again instead of using this machine's cached ceiling.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write ceiling.json here.")] = None,
) -> None:
    """This machine's ceilings: peak compute per dtype (the best of GEMMs and convolutions, naming the kernel) and
    memory bandwidth, measured once and cached; profile rows report their share of it."""
    dtypes = parse_list(dtype, "--dtype")
    if out is not None:
        prove_writable(out)
    ceiling, fresh = obtain(device, dtypes, refresh, on_note=lambda note: err_console.print(note, highlight=False))
    rows = [(f"{d} compute", f"{ceiling.compute[d].value:.3f}", "TFLOP/s", ceiling.compute[d].kernel,
             f"{ceiling.datasheet[d]:g}" if d in ceiling.datasheet else "-") for d in dtypes]
    rows.append(("memory bandwidth", f"{ceiling.bandwidth.value:,.1f}", "GB/s", ceiling.bandwidth.kernel,
                 f"{ceiling.datasheet['gbps']:,.0f}" if "gbps" in ceiling.datasheet else "-"))
    columns = [Column("ceiling", 0, "left", [r[0] for r in rows]), Column("measured", 0, cells=[r[1] for r in rows]),
               Column("unit", 0, "left", [r[2] for r in rows]), Column("set by", 1, "left", [r[3] for r in rows])]
    if ceiling.datasheet:  # a known GPU; no CPU has a datasheet peak convbench could trust
        columns.append(Column("datasheet", 2, cells=[r[4] for r in rows]))
    where = ceiling.machine.get("gpu") or f"{ceiling.machine.get('cpu')}, {ceiling.machine.get('threads')} threads"
    t, left_out = table(f"{where}, torch {ceiling.machine['torch']}", columns, console.width)
    console.print(t)
    for c in left_out:
        say(console, f"{c.header}: " + "; ".join(f"{r[0]} {cell}" for r, cell in zip(rows, c.cells)))
    source = f"measured now in {ceiling.seconds:.1f} s" if fresh else "from this machine's cache (--refresh measures again)"
    console.print(f"{source}; cache key {ceiling.key}", style="dim", highlight=False)
    if out is not None:
        write_json(out / "ceiling.json", ceiling.as_dict())

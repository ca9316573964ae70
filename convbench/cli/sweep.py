"""What every measuring command does around its run: the folder it writes to, the closing line, and an exit
code a script can trust.

Exit codes: 0 when every row was measured (`ok`; `partial`, where a measure cannot exist for that row, say a
training forward at batch 1; `oom`, a batch that does not fit, which is a result); 1 when a row failed (`error`,
or a training run that `diverged`), the finished rows written all the same; with --strict, 1 for any row that
is not `ok`. 2 is bad input, 130 an interrupted run (its finished rows kept)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from convbench import outdirs
from convbench.cli.fit import plural
from convbench.errors import UserInterrupt

if TYPE_CHECKING:
    import pandas as pd

FAILED = ("error", "diverged")


@contextlib.contextmanager
def output_folder(out: Path | None, command: str) -> Iterator[Path]:
    """`out`, or without one a new runs/<command>/<timestamp> that `latest` points at once the run is over."""
    folder = out if out is not None else outdirs.planned(command)
    try:
        yield folder
    finally:
        if out is None and folder.exists():
            outdirs.point_latest(folder)


def exit_code(frame: pd.DataFrame, strict: bool = False) -> int:
    statuses = set(frame["status"].dropna()) if len(frame) else set()
    if statuses & set(FAILED) or (strict and statuses - {"ok"}):
        return 1
    return 0


def interrupted(rows: int, path: str) -> UserInterrupt:
    verb = "is" if rows == 1 else "are"
    return UserInterrupt(f"interrupted: the {plural(rows, 'finished row')} {verb} in {path}")

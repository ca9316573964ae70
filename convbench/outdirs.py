"""Where a run writes, so that no run ever erases another without being told to.

- No --out: a new folder per run, `runs/<command>/<YYYYmmdd-HHMMSS>`, and `runs/<command>/latest` pointing at the
  newest (a symlink; where the file system has none, a `latest` text file naming it).
- --out DIR that already holds a run of any command: refused in one line that names --overwrite; with it, that
  run's own files are replaced (anything else in DIR is left alone)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from convbench.errors import UserError

RUNS = Path("runs")
# The files a run of each command writes; their presence is what "DIR holds a run" means.
RUN_FILES = {
    "profile": ("profile.csv", "profile.json", "profile.md", "profile.parquet", "layers.csv", "samples.csv",
                "samples.parquet", "env.json"),
    "compare": ("compare.csv", "compare.json", "compare.md", "compare.parquet", "samples.csv", "samples.parquet", "env.json"),
    "train": ("train.csv", "train_steps.csv", "env.json"),
}
MARKERS = ("profile.csv", "compare.csv", "train.csv")


def planned(command: str, root: Path = RUNS, now: _dt.datetime | None = None) -> Path:
    """runs/<command>/<timestamp>, with -2, -3... when that folder exists; not created yet (bad input must not
    leave an empty folder behind)."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder, n = root / command / stamp, 1
    while folder.exists():
        n += 1
        folder = root / command / f"{stamp}-{n}"
    return folder


def point_latest(folder: Path) -> None:
    """`latest` beside `folder` points at it: a symlink, or where there can be none a text file naming it."""
    latest = folder.parent / "latest"
    try:
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        latest.symlink_to(folder.name, target_is_directory=True)
    except OSError:
        try:
            latest.write_text(folder.name + "\n")
        except OSError:
            pass  # the run itself is written; only the pointer to it is missing


def held_run(folder: Path) -> str | None:
    """The result file that shows `folder` already holds a run, or None."""
    return next((name for name in MARKERS if (folder / name).exists()), None)


def claim(out: Path, overwrite: bool = False) -> Path:
    """The folder a run writes to, created and proven writable; one that holds a run already is refused unless
    `overwrite`, and then only that run's own files are removed."""
    held = held_run(out)
    if held and not overwrite:
        raise UserError(f"{out} already holds a run ({held}); pass --overwrite to replace it, or choose another --out "
                        f"(without --out every run gets a new folder under {RUNS}/<command>/)")
    if held:
        for name in {n for files in RUN_FILES.values() for n in files}:
            (out / name).unlink(missing_ok=True)
    return prove_writable(out)


def prove_writable(out: Path) -> Path:
    """Create the folder and prove it writable now, not after an hour of measuring."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".convbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    return out

"""Where a run writes, so that no run ever erases another, and none is ever half-written.

- No --out: a new folder per run, `runs/<command>/<YYYYmmdd-HHMMSS>`, created exclusively (a twin started in the
  same second gets `-2`), and `runs/<command>/latest`, a link replaced atomically, pointing at the newest.
- --out DIR that already holds a run of any command: refused in one line that names --overwrite; with it, that
  run's own files are replaced (anything else in DIR is left alone).
- A run holds a lock on its folder (`.convbench.lock`) while it writes: a second run on the same folder is refused
  while the first is alive, --overwrite or not.
- Whole files (env.json, the markdown and JSON tables, baselines, caches, reports) are written to a temporary file
  beside their place and renamed into it: a reader, or a full disk, never sees half of one."""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from convbench.errors import UserError
from convbench.files import write_atomically
from convbench.results.schema import ENV_FILE, FORMATS, LAYERS_CSV, ROWS_FILE, SAMPLES_CSV, SAMPLES_PARQUET, STEPS_CSV

RUNS = Path("runs")
LOCK = ".convbench.lock"
# The files a run of each command writes; their presence is what "DIR holds a run" means.
RUN_FILES = {
    "profile": (*(f"profile.{f}" for f in FORMATS), LAYERS_CSV, SAMPLES_CSV, SAMPLES_PARQUET, ENV_FILE),
    "compare": (*(f"compare.{f}" for f in FORMATS), SAMPLES_CSV, SAMPLES_PARQUET, ENV_FILE),
    "train": (ROWS_FILE["train"], STEPS_CSV, ENV_FILE),
}
MARKERS = tuple(ROWS_FILE.values())


def _said(exc: OSError) -> str:
    return exc.strerror or str(exc)


def new_run_folder(command: str, root: Path = RUNS, now: _dt.datetime | None = None) -> Path:
    """runs/<command>/<timestamp>, created now and only by this call: a folder that exists already, made by a run
    started in the same second, is another's, and this run takes <timestamp>-2, -3..."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    parent = root / command
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"cannot create a run folder under {parent}: {_said(exc)}") from None
    raise UserError(f"{parent} holds 10,000 runs of {stamp}; clear some out")


def point_latest(folder: Path) -> None:
    """`latest` beside `folder` points at it: a new link renamed over the old one, so that a reader finds the old
    run or the new, never nothing; where the file system has no links, a text file naming it, written the same way."""
    latest = folder.parent / "latest"
    temporary = folder.parent / f".latest-{os.getpid()}"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(folder.name, target_is_directory=True)
        os.replace(temporary, latest)
    except OSError:
        try:
            write_atomically(latest, folder.name + "\n")
        except OSError:
            pass  # the run itself is written; only the pointer to it is missing


def held_run(folder: Path) -> str | None:
    """The result file that shows `folder` already holds a run, or None."""
    for name in MARKERS:
        try:
            if (folder / name).exists():
                return name
        except OSError:  # a name the file system cannot hold: no run there
            return None
    return None


PREVIOUS = ".convbench-previous"  # an --overwrite run's predecessor, kept aside until the new run has a row


def _run_files(folder: Path) -> list[Path]:
    return [folder / n for n in sorted({n for files in RUN_FILES.values() for n in files}) if (folder / n).exists()]


class Claim:
    """A run's hold on its folder: the lock is this process's until `release()` (or the process's end: the kernel
    drops an flock with its holder, so a killed run never locks its folder for good). Under --overwrite the run it
    replaces waits in PREVIOUS until `commit()` (the new run's first finished row); a run released without one
    puts it back, as it was (`restored`)."""

    def __init__(self, folder: Path, handle: int, aside: Path | None = None) -> None:
        self.folder, self._handle, self._aside = folder, handle, aside
        self.restored = False

    def commit(self) -> None:
        """The new run has a row: the old one is replaced for good."""
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)
            self._aside = None

    def release(self) -> None:
        if self._aside is not None:
            _put_back(self.folder, self._aside)
            self._aside, self.restored = None, True
        if self._handle >= 0:
            os.close(self._handle)
            self._handle = -1

    def __enter__(self) -> Path:
        return self.folder

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.commit()
        self.release()


def _put_back(folder: Path, aside: Path) -> None:
    for path in _run_files(folder):
        path.unlink()
    for path in aside.iterdir():
        os.replace(path, folder / path.name)
    aside.rmdir()


def claim(out: Path, overwrite: bool = False) -> Claim:
    """The folder a run writes to, created, proven writable and locked for this run; one that holds a run already
    is refused unless `overwrite`, and then that run's own files (and nothing else in the folder) are moved aside
    until the new run finishes a row. One that another live run is writing to is refused either way."""
    prove_writable(out)
    try:
        handle = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {_said(exc)}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise UserError(f"another convbench run is writing to {out}; wait for it to end, or choose another --out") from None
    aside = out / PREVIOUS
    if aside.is_dir():  # an --overwrite run killed before its first row: the run it was replacing comes back first
        _put_back(out, aside)
    held = held_run(out)
    if held and not overwrite:
        os.close(handle)
        raise UserError(f"{out} already holds a run ({held}); pass --overwrite to replace it, or choose another --out "
                        f"(without --out every run gets a new folder under {RUNS}/<command>/)")
    if not held:
        return Claim(out, handle)
    aside.mkdir()
    for path in _run_files(out):
        os.replace(path, aside / path.name)
    return Claim(out, handle, aside)


def prove_writable(out: Path) -> Path:
    """Create the folder and prove it writable now, not after an hour of measuring."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".convbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {_said(exc)}") from None
    return out

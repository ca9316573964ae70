"""What every measuring command does around its run: the folder it writes to, shards (--shard, torchrun, Slurm
job arrays: convbench.run.engines), the closing line, and an exit code a script can trust.

Exit codes: 0 when every row was measured (`ok`; `partial`, where a measure cannot exist for that row, say a
training forward at batch 1; `oom`, a batch that does not fit, which is a result); 1 when a row failed (`error`,
or a training run that `diverged`), the finished rows written all the same; with --strict, 1 for any row that
is not `ok`. 2 is bad input; 130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP) an interrupted run, its finished rows kept."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from convbench.analysis.merge import merge
from convbench.cli.app import console, error_line
from convbench.cli.fit import kept
from convbench.cli.report_cmd import print_report
from convbench.cli.tables import busy_warning, closing_line
from convbench.errors import UserError, UserInterrupt
from convbench.results import folders as outdirs
from convbench.run import engines, rows
from convbench.run import shard as shards

if TYPE_CHECKING:
    import pandas as pd

@contextlib.contextmanager
def output_folder(out: Path | None, command: str) -> Iterator[Path]:
    """`out`, or without one a new runs/<command>/<timestamp>, this run's alone, that `latest` points at once the
    run is over; bad input leaves no empty folder behind."""
    if out is not None:
        yield out
        return
    folder = outdirs.new_run_folder(command)
    try:
        yield folder
    finally:
        if not any(p.name != outdirs.LOCK for p in folder.iterdir()):
            for leftover in folder.iterdir():
                leftover.unlink()
            folder.rmdir()
        else:
            outdirs.point_latest(folder)


def exit_code(frame: pd.DataFrame, strict: bool = False) -> int:
    statuses = set(frame["status"].dropna()) if len(frame) else set()
    if statuses & set(rows.FAILED) or (strict and statuses - {rows.OK}):
        return 1
    return 0


def interrupted(count: int, path: str, signal_number: int = 2) -> UserInterrupt:
    return UserInterrupt(f"interrupted: {kept(count, 'finished row', path)}", signal_number)


def show(frame: pd.DataFrame, where: str, print_table: Callable[[pd.DataFrame, str], None],
         busy_label: Callable[[dict[str, Any]], str], stopped: bool = False) -> None:
    """A sweep's rows on screen: its table, a warning naming rows timed on a busy machine, the closing line."""
    if len(frame):
        print_table(frame, where)
    warning = busy_warning(frame, busy_label)
    if warning:
        console.print(warning, style="yellow", highlight=False)
    if len(frame) or not stopped:
        line = closing_line(frame, where)
        if len(line) > console.width:  # the path on a line of its own rather than broken anywhere
            line = line.replace(" -> ", "\n  -> ", 1)
        console.print(line, highlight=False, soft_wrap=True)


@dataclass
class Screen:
    """How a command shows a finished sweep (its own run, or the merge of its shards) and what it exits with."""
    stem: str                                                 # profile, compare or train: the CSV's name
    print_table: Callable[[pd.DataFrame, str], None]
    busy_label: Callable[[dict[str, Any]], str]
    strict: bool = False
    report: bool = False

    def finished(self, frame: pd.DataFrame, folder: Path, stopped: int = 0, interrupt: UserInterrupt | None = None,
                 restored: bool = False, refused: list[str] | None = None) -> int:
        """`stopped`: the number of the signal that ended the run early (2 for Ctrl-C), 0 when it ran to its end;
        `restored`: it ended before its first row, and the run it was to replace (--overwrite) is back; `refused`:
        --arch parts that named no model, one line each on stderr, and exit 2 once the others are measured."""
        where = f"{folder}/{self.stem}.csv"
        show(frame, where, self.print_table, self.busy_label, bool(stopped))
        for line in refused or ():
            error_line(f"error: {line}")
        if stopped and restored:
            raise UserInterrupt(f"interrupted before a row was finished: {folder} holds the run --overwrite was to "
                                "replace, as it was", stopped)
        if stopped:
            if interrupt is not None:
                interrupt.exit_code = 128 + stopped
            raise interrupt or interrupted(len(frame), where, stopped)
        if self.report:
            print_report(folder)
        return max(exit_code(frame, self.strict), 2 if refused else 0)

    def merged(self, merged: Any) -> int:
        return self.finished(merged.frame, merged.out)


def run_sweep(command: str, shard_option: str | None, out: Path | None, overwrite: bool, device: str,
              make_config: Callable[[Path, str, tuple | None], Any], measure: Callable[[Any], int],
              show_merged: Callable[[Any], int]) -> int:
    """Run a command's sweep whole, as one shard, or as this rank's shard under torchrun (then rank 0 merges).
    `make_config(folder, device, shard)` builds (and so checks) the config; `measure(config)` runs and prints it
    and returns the exit code; `show_merged(merged)` prints a merged sweep and returns its exit code."""
    shard = shards.resolve(shard_option)
    if shard is None:
        with output_folder(out, command) as folder:
            return measure(make_config(folder, device, None))
    key = (shard.index, shard.count, shard.source)
    if shard.source == "torchrun" and not engines.worker_process():
        device = engines.local_device(device)
        root = out or engines.default_out(command)
        make_config(shards.shard_folder(root, shard), device, key)  # every rank checks the options before measuring
        held = outdirs.held_run(root)
        if held and not overwrite:
            raise UserError(f"{root} already holds a run ({held}); pass --overwrite to replace it, or choose another --out")
        code = engines.torchrun_supervise(shard, root, device, lambda folder, dev: measure(make_config(folder, dev, key)),
                                          lambda r: show_merged(merge([r / "shards"], r, overwrite=True)))
        if out is None and shard.index == 1:
            outdirs.point_latest(root)
        return code
    if out is None:
        raise UserError(f"a sweep split into shards needs --out DIR: shard {shard} writes DIR/shards/{shard.folder_name}, "
                        "and `convbench merge DIR` joins the shards")
    folder = shards.shard_folder(out, shard)
    code = measure(make_config(folder, device, key))
    console.print(f"shard {shard} ({shard.source}) -> {folder}; once every shard is done: convbench merge {out}",
                  highlight=False)
    return code

"""How many convbench sweeps measure on this host at once. Shards that share a host share its CPU, PCIe bus and
power; each row records the count when it finished (`shards_on_host`), so that a reader, and `diff`, can tell a
busy node from a quiet one. Each measuring process keeps a file named after its pid in a folder every process on
the host sees; a file whose process is gone does not count."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _folder() -> Path:
    return Path(os.environ.get("CONVBENCH_PEERS_DIR") or Path(tempfile.gettempdir()) / "convbench-sweeps")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """This process counts as a sweep on the host for the length of the block."""
    mark = None
    try:
        _folder().mkdir(parents=True, exist_ok=True)
        mark = _folder() / str(os.getpid())
        mark.write_text("")
    except OSError:
        mark = None  # the count is then one short; the sweep goes on
    try:
        yield
    finally:
        if mark is not None:
            mark.unlink(missing_ok=True)


def count() -> int:
    """Sweeps measuring on this host now, this one included (at least 1). The mark of a process that is gone (a
    sweep killed with -9 has no chance to remove its own) is ignored and removed."""
    try:
        marks = [p for p in _folder().iterdir() if p.name.isdigit()]
    except OSError:
        return 1
    alive = 0
    for mark in marks:
        if _alive(int(mark.name)):
            alive += 1
        else:
            mark.unlink(missing_ok=True)
    return max(1, alive)

"""torch.profiler's native layer (kineto) writes `USDT: ... profiler_start` and `profiler_stop` to the process's
stderr at every start and stop, under the table a user reads. Those lines are dropped; anything else the block
writes to stderr is passed on once it ends."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

DROPPED = ("USDT:",)


@contextlib.contextmanager
def profiler_chatter_dropped() -> Iterator[None]:
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by something without a descriptor
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith(DROPPED)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()

"""How busy the rest of the machine was while a row was timed.

A CPU-heavy neighbour on a 2-core machine turned googlenet's 42.5 ms into 2,584 ms with an IQR of 4 ms: the
spread of the samples cannot show contention that lasts the whole row. What can: the machine's CPU time spent
outside this process (plus time stolen by a hypervisor) over the same interval, from /proc/stat and
/proc/self/stat (Linux). `host_busy` is that time as a share of all the machine's CPU time, and a row is `busy`
when it exceeds BUSY_SHARE. Elsewhere the columns stay empty."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Measured on the 2-core CI machine: while profile rows were timed, others took 0-2% of the CPU time on the idle
# machine and 34-37% with one spinning neighbour. A tenth sits well above the first and well below the second.
BUSY_SHARE = 0.10
# /proc/stat counts in jiffies (10 ms): over a short interval one tick of a neighbour reads as a large share (a
# 3 ms row once read 100% busy on a quiet machine). Below this many jiffies of capacity there is no figure.
MIN_CAPACITY_JIFFIES = 50


@dataclass(frozen=True)
class Snapshot:
    wall: float        # seconds, monotonic
    busy: int          # jiffies all CPUs spent neither idle nor waiting on I/O
    steal: int         # jiffies a hypervisor gave to other guests
    own: int           # jiffies this process spent (user + system, all its threads)
    cpus: int


def _jiffies_per_second() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def snapshot() -> Snapshot | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own_fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    own = int(own_fields[11]) + int(own_fields[12])  # utime, stime (fields 14 and 15 of /proc/self/stat)
    return Snapshot(time.monotonic(), user + nice + system + irq + softirq, steal, own, os.cpu_count() or 1)


def others_share(start: Snapshot | None, end: Snapshot | None) -> float | None:
    """Share of the machine's CPU time, over the interval, used by other processes or stolen from this guest."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    capacity = (end.wall - start.wall) * _jiffies_per_second() * end.cpus
    if capacity < MIN_CAPACITY_JIFFIES:
        return None
    others = (end.busy - start.busy) - (end.own - start.own) + (end.steal - start.steal)
    return max(0.0, min(1.0, others / capacity))


def window_columns(start: Snapshot | None) -> dict[str, object]:
    """load_columns from `start` to now, over a window long enough to give a figure: a stretch of timing shorter
    than MIN_CAPACITY_JIFFIES (a small block's pairs) is extended by waiting, since a competing process that
    slowed the pairs is still running a moment later, and a figure of some precision beats none."""
    if start is None:
        return {}
    needed = MIN_CAPACITY_JIFFIES / (_jiffies_per_second() * start.cpus)
    short = needed - (time.monotonic() - start.wall)
    if short > 0:
        time.sleep(short + 0.02)
    return load_columns(start, snapshot())


def load_columns(start: Snapshot | None, end: Snapshot | None) -> dict[str, object]:
    share = others_share(start, end)
    if share is None:
        return {}
    return {"host_busy": share, "busy": share > BUSY_SHARE}


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


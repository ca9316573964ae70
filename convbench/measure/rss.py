"""Resident-set peaks of this process (Linux): reset the kernel's high-water mark, read the rise."""
from __future__ import annotations

import ctypes
import sys


def available() -> bool:
    return sys.platform.startswith("linux")


def rss_fields() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_high_water_mark() -> int:
    """Reset VmHWM to the current RSS and return that RSS, the baseline of the next peak."""
    release_freed_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_fields()["VmRSS"]


def peak_since_reset(baseline: int) -> int:
    return rss_fields()["VmHWM"] - baseline


def release_freed_memory() -> None:
    # Make large frees go back to the OS at once, so freed pages of an earlier pass cannot hide a later peak.
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: fixed 64 KiB, no dynamic growth
        libc.malloc_trim(0)
    except OSError:
        pass

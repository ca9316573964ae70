"""Child processes convbench starts (an isolated unit, a CPU peak-memory pass, DDP ranks, the gate's workers):
each imports what its parent can, and none outlives its parent.

A child gets the parent's sys.path as its PYTHONPATH, since a user's model may live on a path added at run time
(the current folder of `convbench`, a notebook's sys.path.append). On Linux a child asks the kernel to kill it
when its parent dies (PR_SET_PDEATHSIG), so that `kill -9` of a sweep does not leave a child measuring on at
full load and skewing whatever runs next."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any, Mapping

_PR_SET_PDEATHSIG = 1


def env(extra: Mapping[str, str | None] | None = None, path_first: list[str] | None = None) -> dict[str, str]:
    """The parent's environment with PYTHONPATH set to its sys.path (`path_first` before it); `extra` values of
    None remove a variable."""
    result = dict(os.environ)
    result["PYTHONPATH"] = os.pathsep.join([*(path_first or []), *(p for p in sys.path if p)])
    for key, value in (extra or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up is all there is
        pass


def forked_worker() -> None:
    """A forked worker's signals: SIGTERM and SIGHUP end it silently (it inherited the parent's handlers, which raise
    to end a run cleanly and would print a traceback from the worker when its pool is terminated), and Ctrl-C is
    the parent's to handle (it stops the pool)."""
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen of a child that dies with this process."""
    if sys.platform.startswith("linux"):
        kwargs.setdefault("preexec_fn", die_with_parent)
    return subprocess.Popen(args, **kwargs)


def run(args: list[str], timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run of a child that dies with this process, and is killed (not left running) when it times out
    or this process is interrupted while waiting."""
    with popen(args, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

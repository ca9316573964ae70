"""How convbench hears Ctrl-C, SIGTERM (as `timeout`, Slurm and a CI runner send) and SIGHUP (a closed terminal):
the first ends the run where it is (KeyboardInterrupt, or Terminated carrying its number), so that the finished
rows and every writer are done and the exit code is 128 + the signal's number; a second one while that happens is
let go, so that a user's impatient second Ctrl-C cannot cut the writers short or end the process in a traceback.
Signals a parent chose to ignore (nohup's SIGHUP, a background job's SIGINT) stay ignored."""
from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from convbench.errors import Terminated

NAMES = ("SIGINT", "SIGTERM", "SIGHUP")
_received: list[int] = []
_owned: list[int] = []
_permanent = False


def _handler(number: int, _frame: FrameType | None) -> None:
    if _received:  # already ending: the first signal's clean-up goes on
        return
    _received.append(number)
    # Ignored rather than handled from here on: at exit Python gives handled signals back their default action,
    # and a second SIGTERM during torch's teardown would then kill the process after its line was said.
    for owned in _owned:
        signal.signal(owned, signal.SIG_IGN)
    if number == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(number)


def received() -> int | None:
    """The signal that is ending this run, if one is."""
    return _received[0] if _received else None


def install(permanent: bool = False) -> dict[int, Any] | None:
    """convbench's handlers on every signal still at its default; returns what to restore() (None when the
    process entry installed them for its whole life). `permanent`: the command line's own process."""
    global _permanent
    _received.clear()
    if _permanent:
        return None
    previous: dict[int, Any] = {}
    for name in NAMES:
        number = getattr(signal, name, None)
        if number is None:
            continue
        current = signal.getsignal(number)
        if current in (signal.SIG_DFL, signal.default_int_handler, None):
            try:
                signal.signal(number, _handler)
            except ValueError:  # not the main thread: the caller's own handlers stay
                continue
            previous[number] = current
    _owned[:] = list(previous)
    _permanent = permanent
    return previous


def restore(previous: dict[int, Any] | None) -> None:
    if previous is not None:
        _received.clear()
    for number, handler in (previous or {}).items():
        signal.signal(number, handler)

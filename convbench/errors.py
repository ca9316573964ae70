class UserError(Exception):
    """A mistake in what the user asked for, or a run that cannot go on: the CLI prints it as one line and exits
    with `exit_code`."""
    exit_code = 2


class RowFailure(Exception):
    """A failure of one row whose message already says, in words, what failed: shown as it is."""


class Diverged(RowFailure):
    """A training run whose loss stopped being a finite number: its row's status is diverged."""


class UserInterrupt(UserError):
    """Ctrl-C (or SIGTERM, SIGHUP) after the finished work was saved: reported in one line, exit code 128 + the
    signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the process was, so that it ends the run the way Ctrl-C does."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class RunStopped(UserError):
    """A run that stopped early on a failed row (a diverged training run): its rows are kept, exit 1."""
    exit_code = 1


class Unwritable(OSError, UserError):
    """A file convbench must write that the system refuses (a read-only folder, no permission): one line, exit 2.
    Still an OSError, so that a writer that can go on without its file (a cache) catches it as before."""
    exit_code = 2

    def __str__(self) -> str:
        return str(self.strerror)


class DiskFull(UserError):
    """The disk filled while a run wrote: what was finished is kept, and the run ends in one line, exit 1."""
    exit_code = 1


def error_text(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and its message, whitespace folded; a RowFailure (a failure
    already said in words, one replayed from the count cache among them) as it is."""
    if isinstance(exc, RowFailure):
        return str(exc)[:limit]
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


# How the CPU allocator and the C library say a request did not fit.
_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    import torch  # here: the command's entry imports this module before torch
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or any(w in str(exc).lower() for w in _OOM_WORDS)

import torch


class UserError(Exception):
    """A mistake in what the user asked for: the CLI prints it as one line and exits non-zero."""


class RowFailure(Exception):
    """A failure of one row whose message already says, in words, what failed: shown as it is."""


class UserInterrupt(UserError):
    """Ctrl-C after the finished work was saved: reported in one line, exit code 130."""


def error_text(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and its message, whitespace folded. A failure replayed from
    the count cache already is such a line."""
    if isinstance(exc, RowFailure) or type(exc).__name__ == "CachedFailure":
        return str(exc)[:limit]
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()

"""Files written whole or not at all: a result, a cache entry or a baseline is never seen half-written, and a full
disk leaves the old file as it was. No convbench imports but errors: every layer writes through here."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from convbench.errors import DiskFull, Unwritable

FULL = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write the whole file to; renamed onto `path` when the block ends well,
    removed when it does not (a full disk leaves the old file as it was)."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise refused(path, exc) from None
    os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp's 0600 would make a results file private to its writer
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as exc:
        raise refused(path, exc) from None
    finally:
        temporary.unlink(missing_ok=True)


def refused(path: Path, exc: OSError) -> Exception:
    """The one line for a file the system would not let convbench write: a full disk, or a refusal."""
    if exc.errno in FULL:
        return DiskFull(f"the disk holding {path.parent} is full: {path.name} was not written"
                        + (" (the old one is as it was)" if path.exists() else ""))
    if isinstance(exc, Unwritable):
        return exc
    return Unwritable(exc.errno, f"cannot write {path}: {exc.strerror or exc}")


def write_atomically(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, errors="backslashreplace")  # a non-UTF-8 folder name, escaped


class NotRegular(OSError):
    """A path to read that is a FIFO, a device or a socket: opening it could block forever or read without end."""

    def __str__(self) -> str:
        return str(self.strerror)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path) -> bytes:
    """A regular file's bytes; anything else is refused before it is opened (NotRegular, an OSError)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegular(errno.EINVAL, f"it is {_kind(mode)}, not a regular file")
    return Path(path).read_bytes()


def read_text(path: Path) -> str:
    return read_bytes(path).decode()


def load_json(path: Path) -> Any:
    """A JSON file's value; ValueError (UnicodeDecodeError among them) for what is not JSON, nested too deeply
    included, and OSError for what cannot be read."""
    text = read_text(path)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be a file convbench wrote") from None

"""Files written whole or not at all: a result, a cache entry or a baseline is never seen half-written, and a full
disk leaves the old file as it was. No convbench imports but errors: every layer writes through here."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from convbench.errors import DiskFull

FULL = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write the whole file to; renamed onto `path` when the block ends well,
    removed when it does not (a full disk leaves the old file as it was)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp's 0600 would make a results file private to its writer
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as exc:
        if exc.errno in FULL:
            raise DiskFull(f"the disk holding {path.parent} is full: {path.name} was not written"
                           + (" (the old one is as it was)" if path.exists() else "")) from None
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, errors="backslashreplace")  # a non-UTF-8 folder name, escaped


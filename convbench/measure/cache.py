"""On-disk cache for exact counts (params, MACs, activations, saved bytes) of zoo models.

Counts are pure functions of the model code, torch and fvcore, so the key hashes every source file of the
convbench package together with those versions: any edit to a model, a layer or a counter starts a new
cache. Custom `module:function` models are never cached (their source is not hashed).
Off with CONVBENCH_CACHE=0; lives in $CONVBENCH_CACHE_DIR or ~/.cache/convbench."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from convbench import files
from convbench.errors import DiskFull, RowFailure, UserError, error_text, is_oom
from convbench.files import write_atomically


def enabled() -> bool:
    return os.environ.get("CONVBENCH_CACHE", "1") not in ("0", "false", "no")


@functools.lru_cache(maxsize=None)
def _code_key() -> str:
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    try:
        from importlib.metadata import version
        fv = version("fvcore")
    except Exception:  # no fvcore: the key still differs from one with it
        fv = "none"
    digest.update(f"torch={torch.__version__};fvcore={fv}".encode())
    return digest.hexdigest()[:16]


def root() -> Path:
    """Where convbench keeps what it measured or counted once per machine: $CONVBENCH_CACHE_DIR or
    ~/.cache/convbench."""
    return Path(os.environ.get("CONVBENCH_CACHE_DIR") or Path.home() / ".cache" / "convbench")


def _path() -> Path:
    return root() / f"counts-{_code_key()}.json"


_FAILED = "__failed__"
HOW_TO_RECOUNT = "CONVBENCH_CACHE=0 counts again"


class CachedFailure(RowFailure):
    """A failure recorded by an earlier run: its one-line error, and that it came from the cache."""


def _is_fact(exc: BaseException) -> bool:
    """A failure that will happen again with the same code: an op that does not exist, a shape that cannot be.
    Running out of memory, a timeout, a signal or a file system error says something of this moment, not of the
    model, and is never kept."""
    if is_oom(exc) or isinstance(exc, (OSError, TimeoutError, KeyboardInterrupt, SystemExit, UserError)):
        return False
    cause = exc.__cause__ or exc.__context__
    return cause is None or _is_fact(cause)


# What an entry of each kind must hold, as non-negative integers (keys read `<model>@<input>:<kind>:...`).
REQUIRED = {"counts": ("params", "param_bytes", "macs", "acts"), "saved": ("saved_bytes", "saved_act_bytes")}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _valid(key: Any, entry: Any) -> bool:
    """An entry as convbench writes them: a failure's text, or the counts its kind holds."""
    if not isinstance(key, str) or not isinstance(entry, dict) or not entry:
        return False
    if _FAILED in entry:
        return isinstance(entry[_FAILED], str) and len(entry) == 1
    kind = key.split(":")[1] if ":" in key else ""
    return all(_count(entry.get(k)) for k in REQUIRED.get(kind, ())) and \
        all(_count(v) or isinstance(v, str) for v in entry.values())


SUM = "#"  # each entry's checksum: of its key, its content and the code that counted it


def checksum(key: str, entry: dict[str, Any]) -> str:
    content = json.dumps({k: v for k, v in entry.items() if k != SUM}, sort_keys=True)
    return hashlib.sha256(f"{key}\n{content}\n{_code_key()}".encode()).hexdigest()[:16]


def _sealed(data: dict[str, Any]) -> dict[str, Any]:
    return {k: {**v, SUM: checksum(k, v)} for k, v in data.items()}


def _unsealed(key: Any, entry: Any) -> dict[str, Any] | None:
    """The entry as counted, or None where its checksum is missing or wrong (an edited or damaged cache)."""
    if not isinstance(key, str) or not isinstance(entry, dict) or entry.get(SUM) != checksum(key, entry):
        return None
    value = {k: v for k, v in entry.items() if k != SUM}
    return value if _valid(key, value) else None


class CountCache:
    def __init__(self) -> None:
        self.active = enabled()
        self._data: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._dirty = False
        if self.active:
            self._data = self._read()

    def _read(self) -> dict[str, Any]:
        path = _path()
        try:
            data = files.load_json(path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return self._distrust(path, f"{type(exc).__name__}: {' '.join(str(exc).split())[:100]}")
        if not isinstance(data, dict):
            return self._distrust(path, f"it holds a {type(data).__name__}, not counts")
        good = {k: v for k, v in ((k, _unsealed(k, e)) for k, e in data.items()) if v is not None}
        if len(good) < len(data):
            sys.stderr.write(f"convbench: {len(data) - len(good)} entries of the count cache {path} fail their checksum "
                             "(changed since convbench wrote them); they are counted again\n")
            self._dirty = True
        return good

    def _distrust(self, path: Path, why: str) -> dict[str, Any]:
        sys.stderr.write(f"convbench: the count cache {path} could not be used ({why}); counting again\n")
        self._dirty = True
        return {}

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A count from the cache, or computed and kept. A count that fails for good (inception_v3 cannot run a
        training forward at batch 1) fails the same way every time, so its failure is kept too, and raised again
        saying where it came from; a failure of the moment (memory, a timeout) is not kept."""
        if self.active and key in self._data:
            if _FAILED in self._data[key]:
                raise CachedFailure(f"{self._data[key][_FAILED]} (kept in the count cache by an earlier run; {HOW_TO_RECOUNT})")
            return dict(self._data[key])
        try:
            value = compute()
        except Exception as exc:
            if self.active and _is_fact(exc):
                self._data[key] = self._new[key] = {_FAILED: error_text(exc)}
                self._dirty = True
            raise
        if self.active:
            self._data[key] = value
            self._new[key] = value
            self._dirty = True
        return dict(value)

    def take_new(self) -> dict[str, Any]:
        """The entries computed since the last call: a worker process hands them to the parent, which saves."""
        new, self._new = self._new, {}
        return new

    def merge(self, entries: dict[str, Any]) -> None:
        if self.active and entries:
            self._data.update(entries)
            self._dirty = True

    def save(self) -> None:
        if not (self.active and self._dirty):
            return
        path = _path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(_sealed(self._data)))
            self._dirty = False
        except (OSError, DiskFull):
            pass  # a read-only home or a full disk only costs the next run its speed

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
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

import convbench
from convbench.errors import error_text


def enabled() -> bool:
    return os.environ.get("CONVBENCH_CACHE", "1") not in ("0", "false", "no")


@functools.lru_cache(maxsize=None)
def _code_key() -> str:
    digest = hashlib.sha256()
    package = Path(convbench.__file__).parent
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


class CachedFailure(Exception):
    """A failure recorded by an earlier run; str() is the original one-line error."""


class CountCache:
    def __init__(self) -> None:
        self.active = enabled()
        self._data: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._dirty = False
        if self.active:
            try:
                self._data = json.loads(_path().read_text())
            except (OSError, ValueError):
                self._data = {}

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A count from the cache, or computed and kept. A count that fails (inception_v3 cannot run a training
        forward at batch 1) fails the same way every time, so its failure is kept too, and raised again."""
        if self.active and key in self._data:
            if _FAILED in self._data[key]:
                raise CachedFailure(self._data[key][_FAILED])
            return dict(self._data[key])
        try:
            value = compute()
        except Exception as exc:
            if self.active:
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
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
                json.dump(self._data, f)
            os.replace(f.name, path)
            self._dirty = False
        except OSError:
            pass  # a read-only home only costs the next run its speed

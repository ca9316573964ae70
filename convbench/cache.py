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


def _path() -> Path:
    root = Path(os.environ.get("CONVBENCH_CACHE_DIR") or Path.home() / ".cache" / "convbench")
    return root / f"counts-{_code_key()}.json"


class CountCache:
    def __init__(self) -> None:
        self.active = enabled()
        self._data: dict[str, Any] = {}
        self._dirty = False
        if self.active:
            try:
                self._data = json.loads(_path().read_text())
            except (OSError, ValueError):
                self._data = {}

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.active and key in self._data:
            return dict(self._data[key])
        value = compute()
        if self.active:
            self._data[key] = value
            self._dirty = True
        return dict(value)

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

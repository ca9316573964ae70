"""A team's settings for convbench in its own repository: the `[tool.convbench]` table of the nearest
pyproject.toml above the current folder, so that CI runs a bare `convbench baseline` or `convbench gate`.

    [tool.convbench]
    arch = ["mynet.models:build", "mynet.models:build_large"]   # or one comma list
    batch-size = [1, 8]
    input-shape = [3, 224, 224]
    baseline = "tests/convbench-baseline.json"
    fail-above = "20%"

An option given on the command line wins over the table; the table wins over convbench's own default."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from convbench.errors import UserError

KEYS = ("arch", "batch-size", "input-shape", "baseline", "fail-above", "base", "source", "device", "output", "repeat",
        "prove-factor", "rounds", "measure")


def _toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomli is a dependency there (pyproject.toml)
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None


@functools.lru_cache(maxsize=8)
def _settings(start: Path) -> tuple[Path | None, dict[str, Any]]:
    for folder in (start, *start.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            table = _toml(path).get("tool", {}).get("convbench")
            if table is not None:
                if not isinstance(table, dict):
                    raise UserError(f"{path}: [tool.convbench] is not a table")
                unknown = sorted(set(table) - set(KEYS))
                if unknown:
                    raise UserError(f"{path}: [tool.convbench] has no setting {', '.join(unknown)} "
                                    f"(it takes {', '.join(KEYS)})")
                return path, table
            return None, {}  # the project's own pyproject.toml, without convbench settings
    return None, {}


def settings() -> tuple[Path | None, dict[str, Any]]:
    """(the pyproject.toml that holds them, the settings), from the current folder upward."""
    return _settings(Path.cwd().resolve())


PATHS = ("baseline",)  # read relative to the pyproject.toml that names them


def setting(key: str, given: Any, default: Any = None) -> Any:
    """`given` on the command line, else the project's setting in the form the option takes (a list as comma text,
    a path relative to the pyproject.toml), else `default`."""
    if given is not None:
        return given
    path, table = settings()
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{path}: [tool.convbench] {key} = {value!r} is not a value convbench takes")
    if key in PATHS:
        return str(path.parent / value)
    return value if isinstance(value, (int, float)) else str(value)

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

import difflib
import functools
from pathlib import Path
from typing import Any

from convbench.errors import UserError

def _text(v: Any) -> bool:
    return isinstance(v, str)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(each) -> Any:
    return lambda v: isinstance(v, list) and bool(v) and all(each(x) for x in v)


# Each setting, the TOML values it takes and how they are said. The command line's option takes the same value as
# text, and both then go through the same parsing and range checks.
TYPES: dict[str, tuple[Any, str]] = {
    "arch": (lambda v: _text(v) or _list_of(_text)(v), "text or a list of text"),
    "batch-size": (lambda v: _whole(v) or _text(v) or _list_of(_whole)(v), "a whole number or a list of them"),
    "input-shape": (lambda v: _whole(v) or _text(v) or _list_of(_whole)(v), "a list of three whole numbers (C, H, W)"),
    "baseline": (_text, "a path as text"),
    "fail-above": (lambda v: _text(v) or _number(v), 'a percentage as text, such as "20%"'),
    "base": (_text, "a git revision as text"),
    "source": (lambda v: _text(v) or _list_of(_text)(v), "text or a list of text"),
    "device": (_text, "text, such as \"cpu\" or \"cuda\""),
    "output": (_text, "text (the output to count: an index or a key)"),
    "repeat": (_whole, "a whole number"),
    "prove-factor": (_number, "a number"),
    "rounds": (_whole, "a whole number"),
    "measure": (_text, 'text: "time" or "instructions"'),
}
KEYS = tuple(TYPES)


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
                for key, value in table.items():
                    if key not in TYPES:
                        close = difflib.get_close_matches(key, KEYS, n=1)
                        raise UserError(f"{path}: [tool.convbench] has no setting {key!r}"
                                        + (f"; did you mean {close[0]!r}?" if close else f" (it takes {', '.join(KEYS)})"))
                    accepts, said = TYPES[key]
                    if not accepts(value):
                        raise UserError(f"{path}: [tool.convbench] {key} = {value!r} is not {said}")
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
    value = table[key]  # of its key's type: checked when the table was read
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if key in PATHS:
        return str(path.parent / value)
    return value if isinstance(value, (int, float)) else str(value)

"""The model zoo's index: every model registers a builder plus the metadata that reports print beside it."""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from convbench.errors import UserError
from convbench.lists import parse_list


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    input_size: int = 224
    paper: str = ""
    notes: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> nn.Module:
        kwargs = {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        _check_keywords(self, kwargs)
        return self.builder(**kwargs)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    input_size: int = 224,
    paper: str = "",
    notes: str = "",
    **defaults: Any,
) -> ModelInfo:
    """Register `builder(**defaults)` under `name`; `defaults` are what makes this entry differ from its family."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    info = ModelInfo(name, family, builder, input_size, paper, notes, dict(defaults))
    _REGISTRY[name] = info
    return info


def _ensure_loaded() -> None:
    # Importing the family modules runs their register_model calls.
    import convbench.zoo.models  # noqa: F401


def _check_keywords(info: ModelInfo, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(info.builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        known = ", ".join(sorted(p for p in params if p not in info.defaults)) or "none"
        raise UserError(f"{info.name} takes no option {', '.join(unknown)} (it takes: {known})")


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(_unknown_message(name)) from None


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `convbench list` shows them all"
    return f"unknown model {name!r}{hint}"


def list_models(pattern: str | None = None) -> list[str]:
    """Names matching `pattern`: None or 'all', a name, an fnmatch pattern, or a comma list of those.

    A part that matches nothing is a user error (a typo should not silently shrink a sweep)."""
    _ensure_loaded()
    names = list(_REGISTRY)
    if pattern is None or pattern.strip() in ("", "all", "*"):
        return names
    chosen: list[str] = []
    for part in parse_list(pattern, "--arch"):
        matched = [n for n in names if fnmatch.fnmatchcase(n, part)]
        if not matched:
            raise UserError(_unknown_message(part))
        chosen.extend(n for n in matched if n not in chosen)
    return chosen


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; options left at None keep the model's own default."""
    return get_model_info(name).build(**overrides)

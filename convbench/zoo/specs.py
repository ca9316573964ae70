"""What `--arch` can name: zoo models (names, patterns, comma lists, 'all'), the installed timm's and torchvision's
models (`timm:NAME`, `torchvision:PATTERN`, convbench.zoo.libraries) and any importable `package.module:function`
returning an nn.Module, so users can measure their own networks. Each is taken at its own input size unless
--input-size overrides it: the zoo's, the library's published one, or the one a user's builder declares."""
from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from convbench.errors import RowFailure, UserError, error_text
from convbench.lists import parse_list
from convbench.zoo import libraries
from convbench.zoo.outputs import describe, pick_output
from convbench.zoo.registry import get_model_info, list_models


Shape = tuple[int, int, int]  # C, H, W of one input image


@dataclass(frozen=True, eq=False)  # identity: a spec resolved anew must not reuse an old build
class ModelSpec:
    name: str
    family: str
    given_shape: Shape | None          # None: a user's builder that may declare its own (read at its first build)
    builder: Callable[[], nn.Module] = field(repr=False)
    output: str | None = None          # --output: the entry of the forward's output to take (convbench.zoo.outputs)
    given_from: str = "zoo"            # where given_shape came from
    version: str | None = None         # a library model's library version: part of what its cached counts are keyed by

    @property
    def input_shape(self) -> Shape:
        return self.given_shape or self._declared[0]

    @property
    def shape_from(self) -> str:
        """Where input_shape came from, said on every row."""
        return self.given_from if self.given_shape else self._declared[1]

    @functools.cached_property
    def _declared(self) -> tuple[Shape, str]:
        # Read from the meta build the counters share, when the sweep first needs it: never while --arch is resolved
        return declared_shape(self)

    @property
    def cache_name(self) -> str | None:
        """What a cached count of this model is keyed by; None for a user's builder, whose source is not known."""
        if self.family == "custom":
            return None
        return f"{self.name}=={self.version}" if self.version else self.name

    @property
    def input_size(self) -> int:
        """The input's height (its width too, for the square inputs of every zoo model)."""
        return self.input_shape[1]

    def batch_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        return (batch_size, *self.input_shape)

    def meta(self) -> nn.Module:
        """A meta-device build shared by the counters of one model (building is most of a count's cost): for
        shape-only work that leaves the module as it found it; anything that materialises builds its own."""
        return _shared_meta_build(self)

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        if torch.device(device).type == "meta":
            from convbench.zoo.meta import build_on_meta, data_dependent, weights_on_meta
            try:
                with build_on_meta():
                    return self._call_builder()
            except BuildError as exc:
                if not data_dependent(exc.__cause__ or exc):
                    raise
            with weights_on_meta():  # a builder that reads the values of what it computes while it builds
                return self._call_builder()
        with torch.device(device):
            return self._call_builder()

    def instantiate(self) -> nn.Module:
        """The builder's module, built under whatever device the caller has made the default."""
        return self._call_builder()

    def _call_builder(self) -> nn.Module:
        try:
            module = self.builder()
        except SystemExit as exc:
            raise BuildError(f"building the model failed: the builder called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise BuildError(f"building the model failed: {error_text(exc)}") from exc
        if not isinstance(module, nn.Module):
            raise BuildError(f"the builder returned {describe(module)}, not an nn.Module")
        return pick_output(module, self.output) if self.output is not None else module


class BuildError(RowFailure):
    pass


@functools.lru_cache(maxsize=2)
def _shared_meta_build(spec: ModelSpec) -> nn.Module:
    return spec.build("meta")


def _import_builder(spec: str) -> Callable[..., nn.Module]:
    """`package.module:function`, imported as `python -m convbench` would: from the current folder first (the
    `convbench` script does not put it on sys.path by itself), then the installed packages."""
    module_name, _, attr = spec.partition(":")
    if not module_name.strip() or not attr.strip() or not all(p.isidentifier() for p in module_name.split(".")):
        raise UserError(f"--arch {spec!r} is not package.module:function (a module path, a colon, a function name)")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name!r} for --arch {spec} (from {here} or the installed packages): "
                        f"{exc}") from None
    except (Exception, SystemExit) as exc:
        raise UserError(f"importing {module_name!r} for --arch {spec} failed: {error_text(exc)}") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise UserError(f"{module_name} has no callable {attr!r} (for --arch {spec})")
    return builder


def input_shape(size: int | Shape | None, default: int | Shape) -> Shape:
    """An input size (square, 3 channels) or a C, H, W shape, else the default's."""
    chosen = default if size is None else size
    return (3, chosen, chosen) if isinstance(chosen, int) else tuple(chosen)


DEFAULT_SHAPE: Shape = (3, 224, 224)
UNDECLARED = "default: its builder declares no input size"


def _as_shape(value: Any) -> Shape | None:
    """A declared input size: an int (square, 3 channels) or a (C, H, W) sequence of positive ints; else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (3, value, value)
    if isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                    and v > 0 for v in value):
        return tuple(value)
    return None


def declared_shape(spec: ModelSpec) -> tuple[Shape, str]:
    """The input a user's builder declares (docs/profile.md): the built model's `input_size`, or its timm-style
    `pretrained_cfg` / `default_cfg` "input_size" (a builder that returns a timm model declares it so). Read from the
    meta-device build the counters share; a builder that cannot be built fails in its rows, at the default size."""
    try:
        module = _shared_meta_build(spec)
    except (Exception, SystemExit):
        return DEFAULT_SHAPE, UNDECLARED
    found = _as_shape(getattr(module, "input_size", None))
    if found is not None:
        return found, "its model's input_size"
    for attribute in ("pretrained_cfg", "default_cfg"):
        config = getattr(module, attribute, None)
        size = config.get("input_size") if isinstance(config, dict) else None
        found = _as_shape(tuple(size) if isinstance(size, (tuple, list)) else None)
        if found is not None:
            return found, f"its model's {attribute}"
    return DEFAULT_SHAPE, UNDECLARED


def _needs_arguments(builder: Callable[..., Any]) -> list[str]:
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                          p.KEYWORD_ONLY)]


def _custom(part: str, input_size: int | Shape | None, output: str | None) -> ModelSpec:
    builder = _import_builder(part)
    missing = _needs_arguments(builder)
    if missing:
        raise UserError(f"--arch {part} needs arguments ({', '.join(missing)}): --arch calls it with none; name a "
                        f"function that builds the model you mean (def build_it(): return {part.partition(':')[2]}(...))")
    if input_size is not None:
        return ModelSpec(part, "custom", input_shape(input_size, 224), builder, output, "--input-size")
    own = _as_shape(getattr(builder, "input_size", None))  # declared on the function: read without building
    return ModelSpec(part, "custom", own, builder, output, "its builder's input_size")


def _zoo(part: str, input_size: int | Shape | None, output: str | None, all_matching: bool) -> list[ModelSpec]:
    names = list_models(part)
    _check_count(part, len(names), all_matching)
    specs = []
    for name in names:
        info = get_model_info(name)
        specs.append(ModelSpec(name, info.family, input_shape(input_size, info.input_size), info.build, output,
                               "--input-size" if input_size is not None else "zoo"))
    return specs


def _check_count(part: str, found: int, all_matching: bool) -> None:
    if found > libraries.PATTERN_LIMIT and not all_matching and part.strip() not in ("all", "*"):
        raise UserError(f"--arch {part} matches {found} models (more than {libraries.PATTERN_LIMIT}): narrow it, or "
                        "pass --all-matching to take them all")


def _library(part: str, input_size: int | Shape | None, output: str | None, all_matching: bool) -> list[ModelSpec]:
    specs = []
    for found in libraries.resolve(part, all_matching, sized=input_size is None):
        if input_size is not None:
            shape, source = input_shape(input_size, 224), "--input-size"
        else:
            shape, source = found.input_shape, found.shape_from
        specs.append(ModelSpec(found.name, found.family, shape, found.builder, output, source, found.version))
    return specs


def resolve_models(arch: str, input_size: int | Shape | None = None, output: str | None = None, *,
                   all_matching: bool = False, refused: list[str] | None = None) -> list[ModelSpec]:
    """Expand --arch into model specs, in the order given, without building anything. `input_size` overrides every
    model's input: a square size, or a C, H, W shape; `output` picks the entry of a forward's output to take.

    A part that cannot be resolved (an unknown name, a pattern matching nothing, a missing library) is a UserError;
    given a `refused` list, a sweep's caller collects those lines there instead and measures the other models
    (UserError still when none is left)."""
    specs: list[ModelSpec] = []
    for part in parse_list(arch, "--arch"):
        try:
            if libraries.library_of(part):
                found = _library(part, input_size, output, all_matching)
            elif ":" in part:
                found = [_custom(part, input_size, output)]
            else:
                found = _zoo(part, input_size, output, all_matching)
        except UserError as exc:
            if refused is None:
                raise
            refused.append(str(exc))
            continue
        specs.extend(s for s in found if s.name not in {have.name for have in specs})
    if not specs:
        if refused:
            raise UserError("\n".join(refused))
        raise UserError("--arch names no model; `convbench list` shows the zoo")
    return specs

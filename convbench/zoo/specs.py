"""What `--arch` can name: zoo models (names, patterns, comma lists, 'all') and any importable
`package.module:function` returning an nn.Module, so users can measure their own networks."""
from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from convbench.errors import RowFailure, UserError, error_text
from convbench.lists import parse_list
from convbench.zoo.outputs import describe, pick_output
from convbench.zoo.registry import get_model_info, list_models


Shape = tuple[int, int, int]  # C, H, W of one input image


@dataclass(frozen=True, eq=False)  # identity: a spec resolved anew must not reuse an old build
class ModelSpec:
    name: str
    family: str
    input_shape: Shape
    builder: Callable[[], nn.Module] = field(repr=False)
    output: str | None = None          # --output: the entry of the forward's output to take (convbench.zoo.outputs)

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
            from convbench.zoo.meta import build_on_meta
            with build_on_meta():
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


def resolve_models(arch: str, input_size: int | Shape | None = None, output: str | None = None) -> list[ModelSpec]:
    """Expand --arch into model specs, in the order given, without building anything. `input_size` overrides every
    model's input: a square size, or a C, H, W shape; `output` picks the entry of a forward's output to take."""
    specs: list[ModelSpec] = []
    zoo_parts = []
    for part in parse_list(arch, "--arch"):
        if ":" in part:
            specs.append(ModelSpec(part, "custom", input_shape(input_size, 224), _import_builder(part), output))
        else:
            zoo_parts.append(part)
            for name in list_models(part):
                info = get_model_info(name)
                spec = ModelSpec(name, info.family, input_shape(input_size, info.input_size), info.build, output)
                if spec.name not in {s.name for s in specs}:
                    specs.append(spec)
    if not specs:
        raise UserError("--arch names no model; `convbench list` shows the zoo")
    return specs

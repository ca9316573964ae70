"""Models of the installed timm and torchvision, named as their users name them: `timm:NAME`, `torchvision:NAME`,
and patterns of either (`timm:convnext_*`, `torchvision:resnet*`), each at the input size its library publishes
for it: timm's `pretrained_cfg` input size, torchvision's default weights' crop size (Inception v3 at 299).

Nothing is downloaded: models are built with `pretrained=False` (timm) or `weights=None` (torchvision), and the
input sizes are read from the metadata the installed package carries. torchvision's names are its classification
models (`torchvision.models.list_models(module=torchvision.models)`); timm's are `timm.list_models()`, and a
pretrained tag (`timm:resnet50.a1_in1k`) takes that tag's input size."""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from convbench.errors import UserError

PATTERN_LIMIT = 100   # a pattern matching more is refused unless --all-matching: hundreds of models is rarely meant

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Resolved:
    """One library model: its builder, its input and where that input size came from."""
    name: str            # as --arch spells it: timm:resnet50
    family: str          # the library and the module that defines the model: timm:resnet
    input_shape: Shape
    shape_from: str
    builder: Callable[..., nn.Module]  # keywords (num_classes) go to the library's constructor
    version: str         # the library's, part of what a cached count is keyed by


def library_of(part: str) -> str | None:
    """'timm' or 'torchvision' when `part` names a model of that library, else None."""
    prefix, colon, _ = part.partition(":")
    return prefix if colon and prefix in LIBRARIES else None


def resolve(part: str, all_matching: bool = False, sized: bool = True) -> list[Resolved]:
    """`timm:NAME` or `torchvision:PATTERN` -> its models, in the library's order. UserError (one line) for a
    missing library, an unknown name (with the closest names), a pattern matching nothing or too many. `sized`:
    read each model's input size from the library (without: --input-size gives it, and 3x224x224 stands in)."""
    library = LIBRARIES[library_of(part)]
    wanted = part.partition(":")[2].strip()
    if not wanted:
        raise UserError(f"--arch {part!r} names no model: {library.name}:NAME or {library.name}:PATTERN")
    return [library.resolved(name, sized) for name in library.matching(wanted, all_matching)]


class Library:
    name = ""
    extra = ""

    def module(self) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return importlib.import_module(self.name)
        except ImportError as exc:
            raise UserError(f"{self.name}: models need the {self.name} package ({error_line(exc)}); "
                            f"pip install 'convbench[{self.extra}]'") from None

    @property
    def version(self) -> str:
        return str(getattr(self.module(), "__version__", "unknown"))

    def names(self) -> list[str]:
        raise NotImplementedError

    def known(self, name: str) -> bool:
        return name in self._name_set()

    def _name_set(self) -> frozenset[str]:
        module = self.module()  # the names of this import of the library (a test may put another in its place)
        if getattr(self, "_names_of", None) is not module:
            self._names_of, self._names = module, frozenset(self.names())
        return self._names

    def matching(self, wanted: str, all_matching: bool) -> list[str]:
        if not any(c in wanted for c in "*?["):
            if not self.known(wanted):
                raise UserError(self.unknown(wanted))
            return [wanted]
        found = [n for n in self.names() if fnmatch.fnmatchcase(n, wanted)]
        if not found:
            raise UserError(f"{self.name}:{wanted} matches no model of {self.name} {self.version}; "
                            f"`convbench list {self.name}:*` shows them")
        if len(found) > PATTERN_LIMIT and not all_matching:
            raise UserError(f"{self.name}:{wanted} matches {len(found)} models of {self.name} {self.version} (more "
                            f"than {PATTERN_LIMIT}): narrow the pattern, or pass --all-matching to take them all")
        return found

    def unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        hint = (f"; did you mean {', '.join(f'{self.name}:{c}' for c in close)}?" if close
                else f"; `convbench list {self.name}:*` shows them")
        return f"unknown {self.name} model {name!r} (in {self.name} {self.version}){hint}"

    def resolved(self, name: str, sized: bool = True) -> Resolved:
        shape, source = self.input_shape(name) if sized else ((3, 224, 224), "--input-size")
        return Resolved(f"{self.name}:{name}", self.family(name), shape, source, self.builder(name, shape),
                        self.version)

    def input_shape(self, name: str) -> tuple[Shape, str]:
        raise NotImplementedError

    def family(self, name: str) -> str:
        raise NotImplementedError

    def builder(self, name: str, shape: Shape) -> Callable[[], nn.Module]:
        raise NotImplementedError


def quietly(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A library's build with its warnings kept to itself (torchvision's init_weights FutureWarning, timm's
    deprecated-name notices): they are not convbench's to print, and the model is the same. Keywords (train's
    num_classes) go to the library's constructor."""
    def run(**options: Any) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build(**options)
    return run


class Timm(Library):
    name, extra = "timm", "timm"

    def names(self) -> list[str]:
        return list(self.module().list_models())

    def known(self, name: str) -> bool:
        arch = name.partition(".")[0]  # resnet50.a1_in1k: a pretrained tag of resnet50
        return arch in self._name_set() and (arch == name or self._config(name) is not None)

    def _config(self, name: str) -> Any:
        timm = self.module()
        get = getattr(timm, "get_pretrained_cfg", None) or getattr(getattr(timm, "models", None), "get_pretrained_cfg", None)
        if get is None:
            raise UserError(f"timm {self.version} has no pretrained_cfg to read {name}'s input size from (timm 0.9 "
                            "and newer have it): pass --input-size, or upgrade timm")
        return get(name, allow_unregistered=False)

    def input_shape(self, name: str) -> tuple[Shape, str]:
        config = self._config(name)
        size = getattr(config, "input_size", None) if config is not None else None
        if not size:
            return (3, 224, 224), "timm has no input size for it: 3x224x224"
        return tuple(int(v) for v in size), "timm pretrained_cfg"

    def family(self, name: str) -> str:
        entry = self.module().models.model_entrypoint(name.partition(".")[0])
        return f"timm:{entry.__module__.rpartition('.')[2]}"

    def builder(self, name: str, shape: Shape) -> Callable[[], nn.Module]:
        create = self.module().create_model
        return quietly(lambda **options: create(name, pretrained=False, **options))


class Torchvision(Library):
    name, extra = "torchvision", "torchvision"

    def _models(self) -> Any:
        models = self.module().models  # torchvision's __init__ imports its models
        if not all(hasattr(models, f) for f in ("list_models", "get_model", "get_model_weights", "get_model_builder")):
            raise UserError(f"torchvision {self.version} cannot list or build its models by name (0.15 and newer "
                            "can): upgrade it, or name the model as package.module:function")
        return models

    def names(self) -> list[str]:
        models = self._models()
        return list(models.list_models(module=models))

    def input_shape(self, name: str) -> tuple[Shape, str]:
        weights = getattr(self._models().get_model_weights(name), "DEFAULT", None)
        crop = getattr(getattr(weights, "transforms", None), "keywords", {}).get("crop_size") if weights else None
        if not crop:
            return (3, 224, 224), "torchvision has no default weights for it: 3x224x224"
        return (3, int(crop), int(crop)), f"torchvision {weights} transforms"

    def family(self, name: str) -> str:
        return f"torchvision:{self._models().get_model_builder(name).__module__.rpartition('.')[2]}"

    def builder(self, name: str, shape: Shape) -> Callable[[], nn.Module]:
        models = self._models()
        # A vision transformer's grid is fixed when it is built: weights=None builds it for 224 unless told the size
        # its default weights were trained at (the size its other rows are counted at).
        extra = {"image_size": shape[1]} if name.startswith("vit_") and shape[1] != 224 else {}
        return quietly(lambda **options: models.get_model(name, weights=None, **extra, **options))


def error_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


LIBRARIES: dict[str, Library] = {"timm": Timm(), "torchvision": Torchvision()}

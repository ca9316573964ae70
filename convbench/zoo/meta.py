"""Fast shape-only work on the meta device, for exact counts without weights.

Two things made the meta device slow, both measured on the 2-core CI machine over the whole zoo:
- building: the weight initialisers (normal_, uniform_, trunc_normal_'s in-place arithmetic) run on meta tensors
  through Python decompositions, 4.6 s for the 37 models, though a meta tensor has no values to fill;
  skipping them leaves 1.6 s;
- batch norm: aten::native_batch_norm has no C++ meta kernel, and its Python decomposition took about half of a
  cold static sweep. Its outputs' shapes and dtypes are simple, so a kernel that only allocates them (registered
  for the Meta key, for the length of a `with` block) gives the same saved bytes, exactly, 7x faster.
Neither changes a count: the baseline gate holds params, MACs, activations and saved bytes of every zoo model.

Some builders compute with tensors while they build (torchvision's RegNets derive their widths with torch.arange,
log and round, then read the values): on meta those tensors have no values. Such a model is built again with
real factories and each weight sent to meta as it is registered (`weights_on_meta`), one layer's weights at a
time, initialisers still skipped."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

_INIT_OPS = {"normal_", "uniform_", "fill_", "zero_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
             "xavier_uniform_", "trunc_normal_", "constant_", "ones_", "zeros_", "orthogonal_", "exponential_",
             "bernoulli_", "random_", "erfinv_", "clamp_", "mul_", "add_", "copy_"}


_FACTORIES = _device_constructors()


def _meta_init_target(func, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The meta tensor an initialiser would fill, else None. torch.nn.init's functions reach a mode with the tensor
    as a keyword (`normal_(tensor=w, std=...)`), a Tensor method with it first."""
    if getattr(func, "__name__", "") not in _INIT_OPS:
        return None
    target = args[0] if args else kwargs.get("tensor")
    return target if isinstance(target, torch.Tensor) and target.is_meta else None


class _BuildOnMeta(TorchFunctionMode):
    """torch.device("meta") and no initialisation in one mode: every torch call while a model is built passes
    through the active modes in Python, so one mode instead of two is measurably cheaper. Without `factories`,
    only the initialisation of meta tensors is skipped (weights_on_meta)."""

    def __init__(self, factories: bool = True) -> None:
        super().__init__()
        self.factories = factories

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _meta_init_target(func, args, kwargs)
        if target is not None:
            return target
        if self.factories and func in _FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_on_meta() -> contextlib.AbstractContextManager:
    """Factories make meta tensors; in-place initialisation of them does nothing (there are no values)."""
    return _BuildOnMeta()


@contextlib.contextmanager
def weights_on_meta() -> Iterator[None]:
    """Real factories (a builder may read the values it computes), every parameter and buffer moved to meta as a
    module registers it, and their initialisation skipped there."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: Any) -> None:
        if isinstance(param, nn.Parameter) and not param.is_meta:
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        if isinstance(tensor, torch.Tensor) and not tensor.is_meta:
            tensor = tensor.to("meta")
        register_buffer(module, name, tensor, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        with _BuildOnMeta(factories=False):
            yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


# How torch says that an op needs the values of a tensor that has only a shape (a forward that branches on its data).
_NEEDS_DATA = ("item() cannot be called on meta", "cannot copy out of meta tensor", "data-independent implementation",
               "data-dependent")


def data_dependent(exc: BaseException) -> bool:
    """Whether `exc` is a forward (or a build) reading its own values (`if h.mean() > 0.1:`, .item(), nonzero) on
    the meta device, where tensors have shapes but no values: such a forward is counted on zero-filled real tensors,
    such a build redone with weights_on_meta."""
    text = str(exc).lower()
    return any(words in text for words in _NEEDS_DATA)


def _native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    # The shapes and dtypes the Python decomposition returns: the output like the input (memory format kept), and
    # the per-channel mean and inverse std in the computation dtype (fp32 for half inputs).
    stats = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    channels = input.shape[1]
    return torch.empty_like(input), input.new_empty((channels,), dtype=stats), input.new_empty((channels,), dtype=stats)


@contextlib.contextmanager
def fast_batch_norm() -> Iterator[None]:
    lib = torch.library.Library("aten", "IMPL")
    lib.impl("native_batch_norm", _native_batch_norm, "Meta")
    try:
        yield
    finally:
        lib._destroy()

"""Parameters, MACs and activations.

Convention (ResNet, ResNeXt and Inception papers, torchvision's "GFLOPS", fvcore): one multiply-add is one MAC.
`macs` counts conv and linear/matmul layers only, per image, in an eval-mode forward (so auxiliary heads,
which run only in training, are not counted). `acts` counts the outputs of those layers, as pycls and fvcore do.

One counter makes every figure convbench reports (list, profile, compare, train, baseline): `dispatch_counts`
counts the convolution and matrix-multiply ops that reach torch's dispatcher during one forward on the meta device
(shapes only, no weights materialised, no JIT trace, so the whole zoo counts in a few seconds), and
`training_macs` counts a training step's forward and backward with the same op table and the same mode. Ops it
sees but does not count are listed in `unsupported_ops`, as fvcore lists its own.

fvcore is the named cross-check (`--counter fvcore`): its JIT tracer on real zero-filled weights, imported only
when asked for; `flop_counter_macs` (torch.utils.flop_counter, 2 FLOPs per MAC) is the other, for selfcheck.
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections import Counter
from typing import Any, Callable, Iterator

import torch
from torch import nn

from convbench.zoo.meta import build_on_meta, fast_batch_norm
from convbench.zoo.outputs import auxiliary, logits_of
from convbench.zoo.registry import get_model_info


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def zoo_model_on_meta(name: str, **overrides: Any) -> nn.Module:
    """A zoo model built without allocating or initialising weights: counts never depend on weight values."""
    with build_on_meta():
        return get_model_info(name).build(**overrides)


def materialize(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Give a meta-built model real (zero) tensors, cheaply, so that it can be traced or run."""
    model = model.to_empty(device=device)
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            t.zero_()
    return model


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    weight = args[1]  # Cout, Cin / groups, *kernel
    return out.numel() * weight.shape[1] * math.prod(weight.shape[2:])


def _mm_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    return a.shape[0] * a.shape[1] * b.shape[1]


_MAC_OPS = {
    "convolution": _conv_macs,
    "mm": lambda args, out: _mm_macs(args[0], args[1]),
    "addmm": lambda args, out: _mm_macs(args[1], args[2]),
    "bmm": lambda args, out: args[0].shape[0] * _mm_macs(args[0][0], args[1][0]),
    "baddbmm": lambda args, out: args[1].shape[0] * _mm_macs(args[1][0], args[2][0]),
}
# Ops that only move, view or allocate: not compute, so not worth listing as uncounted.
_NOT_COMPUTE = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "empty", "empty_like", "zeros",
                "zeros_like", "detach", "alias", "slice", "select", "unsqueeze", "squeeze", "clone", "_to_copy", "as_strided",
                "split", "split_with_sizes", "unbind", "contiguous", "lift_fresh", "copy_", "new_empty", "fill_", "zero_"}


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _numel(value: Any) -> int:
    value = _first(value)
    return value.numel() if isinstance(value, torch.Tensor) else 0


def _norm(per_element_affine: int, weight_at: int) -> Callable[[tuple, Any], int]:
    """A normalisation's FLOPs: per input element, one less without its affine weight (fvcore's weights)."""
    return lambda args, out: _numel(args[0]) * (per_element_affine - (args[weight_at] is None))


def _batch_norm(args: tuple, out: Any) -> int:
    # eval: a scale and a shift per element (2; 1 without affine); training adds the batch statistics (5; 4).
    training = bool(args[5]) if len(args) > 5 else False
    return _numel(args[0]) * ((5 if training else 2) - (args[1] is None))


def _window(args: tuple, out: Any) -> int:
    kernel = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
    return _numel(out) * math.prod(kernel)


def _per_output(weight: int) -> Callable[[tuple, Any], int]:
    return lambda args, out: weight * _numel(out)


def _per_input(args: tuple, out: Any) -> int:
    return _numel(args[0])


# FLOPs of the arithmetic MACs leave out (the `other_flops` column; docs/profile.md gives the table). Any op torch
# tags pointwise counts 1 per output element; these are the others, and the pointwise ops weighted otherwise.
_OTHER_OPS: dict[str, Callable[[tuple, Any], int]] = {
    "native_batch_norm": _batch_norm, "_native_batch_norm_legit": _norm(5, 1),
    "_native_batch_norm_legit_no_training": _norm(2, 1),
    "native_layer_norm": _norm(5, 2), "native_group_norm": _norm(5, 1),
    "_softmax": _per_output(5), "_safe_softmax": _per_output(5), "_log_softmax": _per_output(5),
    "max_pool1d": _window, "max_pool2d": _window, "max_pool2d_with_indices": _window, "max_pool3d_with_indices": _window,
    "avg_pool1d": _window, "avg_pool2d": _window, "avg_pool3d": _window,
    "_adaptive_avg_pool2d": _per_input, "_adaptive_avg_pool3d": _per_input, "adaptive_max_pool2d": _per_input,
    "mean": _per_input, "sum": _per_input, "amax": _per_input, "amin": _per_input, "max": _per_input,
    "min": _per_input, "linalg_vector_norm": _per_input, "norm": _per_input, "var": _per_input, "std": _per_input,
    "var_mean": _per_input, "std_mean": _per_input, "logsumexp": _per_input, "cumsum": _per_input,
    "upsample_nearest1d": _per_output(1), "upsample_nearest2d": _per_output(1), "upsample_nearest3d": _per_output(1),
    "_upsample_nearest_exact2d": _per_output(1), "upsample_linear1d": _per_output(2),
    "upsample_bilinear2d": _per_output(4), "_upsample_bilinear2d_aa": _per_output(4),
    "upsample_bicubic2d": _per_output(16), "upsample_trilinear3d": _per_output(8),
    "hardswish": _per_output(1), "hardswish_": _per_output(1), "hardsigmoid": _per_output(1),
    "hardsigmoid_": _per_output(1),
}
# A counted op's own extra: the bias a convolution or addmm adds, one per output element.
_BIAS_AT = {"convolution": 2, "addmm": 0, "baddbmm": 0}


def _bias(at: int) -> Callable[[tuple, Any], int]:
    return lambda args, out: _numel(out) if args[at] is not None else 0


def _other_handle(func: Any, name: str) -> Callable[[tuple, Any], int] | None:
    """How an op's FLOPs beside MACs are counted; None for ops that only move or allocate."""
    if name in _BIAS_AT:
        return _bias(_BIAS_AT[name])
    if name in _OTHER_OPS:
        return _OTHER_OPS[name]
    if name not in _NOT_COMPUTE and torch.Tag.pointwise in func.tags:
        return _per_output(1)
    return None


# What each op (an OpOverload) is, worked out once per process: its name and its FLOPs beside MACs.
_OP_PLANS: dict[Any, tuple[str, Callable[[tuple, Any], int] | None]] = {}


def _plan(func: Any) -> tuple[str, Callable[[tuple, Any], int] | None]:
    plan = _OP_PLANS.get(func)
    if plan is None:
        name = func.overloadpacket.__name__
        plan = _OP_PLANS[func] = (name, _other_handle(func, name))
    return plan


def other_flops(func: Any, args: tuple, out: Any) -> int:
    """FLOPs of one op that MACs leave out: 0 for ops that only move or allocate."""
    handle = _plan(func)[1]
    return handle(args, out) if handle is not None else 0


class _Tally:
    """What one counted run saw: MACs and outputs of the counted ops (in total and per enclosing module), the
    FLOPs MACs leave out, and how often each uncounted compute op ran."""

    def __init__(self) -> None:
        self.macs = self.acts = self.other = 0
        self.stack: list[str] = []
        self.per_module: dict[str, list[int]] = {}
        self.uncounted: Counter = Counter()
        self.counted: Counter = Counter()

    def add(self, func: Any, args: tuple, out: Any) -> None:
        name, other = _plan(func)
        if name == "convolution_backward":
            self.macs += _conv_backward_macs(args, out)
            return
        if other is not None:
            self.other += other(args, out)
        handle = _MAC_OPS.get(name)
        if handle is None:
            if name not in _NOT_COMPUTE:
                self.uncounted[f"aten::{name}"] += 1
            return
        macs, acts = handle(args, out), out.numel()
        self.counted[f"aten::{name}"] += 1
        self.macs += macs
        self.acts += acts
        for module_name in self.stack:
            entry = self.per_module.setdefault(module_name, [0, 0])
            entry[0] += macs
            entry[1] += acts


@contextlib.contextmanager
def _counting(model: nn.Module, by_module: bool = False) -> Iterator[_Tally]:
    """Every op of the block counted into a _Tally, on the meta device's fast batch norm."""
    from torch.utils._python_dispatch import TorchDispatchMode

    tally = _Tally()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tally.add(func, args, out)
            return out

    handles = []
    if by_module:
        def push(name):
            return lambda module, inputs: tally.stack.append(name)

        def pop(module, inputs, output):
            tally.stack.pop()
        for name, module in model.named_modules():
            handles += [module.register_forward_pre_hook(push(name)), module.register_forward_hook(pop)]
    try:
        with fast_batch_norm(), _Count():
            yield tally
    finally:
        for h in handles:
            h.remove()


def device_of(model: nn.Module, default: str = "cpu") -> torch.device:
    """Where a model's tensors live; `default` for one that holds none (a pooling or normalisation block)."""
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device(default))


ZEROS_NOTE = ("counted on zero-filled weights and input on the CPU: the forward branches on its own values ({why}), "
              "so an input that takes another branch counts otherwise")


def dispatch_counts(model: nn.Module, input_shape: tuple[int, ...], by_module: bool = False) -> dict[str, Any]:
    """MACs and activations (outputs of conv and matmul-like ops) per image, from one eval forward on the model's
    device: meta (build it with `zoo_model_on_meta` or `spec.build("meta")`), or real zero-filled tensors
    (`materialize`) for a forward that reads its own values."""
    was_training = model.training
    model.eval()
    device = device_of(model, "meta")
    try:
        with torch.no_grad(), _counting(model, by_module) as tally:
            logits_of(model(torch.zeros(input_shape, device=device)))  # a forward convbench cannot use says so here
    finally:
        model.train(was_training)
    batch = input_shape[0]
    result: dict[str, Any] = {"macs": tally.macs // batch, "acts": tally.acts // batch, "other_flops": tally.other // batch,
                              "unsupported_ops": dict(sorted(tally.uncounted.items())),
                              "counted_ops": dict(sorted(tally.counted.items()))}
    if by_module:
        result["modules"] = {name: {"macs": m // batch, "acts": a // batch} for name, (m, a) in tally.per_module.items()}
    return result


def count(model_on_meta: nn.Module, input_shape: tuple[int, ...], counter: str = "dispatch", by_module: bool = False) -> dict[str, Any]:
    """MACs, activations and uncounted ops with the chosen counter; fvcore gets zero-filled real weights."""
    if counter == "fvcore":
        result = fvcore_counts(materialize(copy.deepcopy(model_on_meta)), input_shape, by_module=by_module)
        dispatch = dispatch_counts(model_on_meta, input_shape)
        result["other_flops"] = dispatch["other_flops"]  # fvcore's handles are for MACs alone: the rest is counted here
        note = counters_differ(result, dispatch)
        if note:
            result["note"] = note
        return result
    return dispatch_counts(model_on_meta, input_shape, by_module=by_module)


# Element-wise, normalising and pooling ops fvcore leaves uncounted by design (they hold no MACs).
_NO_MACS = ("relu", "add", "mul", "batch_norm", "pool", "cat", "dropout", "flatten", "sigmoid", "softmax", "gelu",
            "silu", "hardswish", "hardsigmoid", "layer_norm", "group_norm", "mean", "div", "sub", "clamp", "pad",
            "upsample", "size", "view", "reshape", "contiguous", "sum", "lrn", "local_response_norm", "numtotensor",
            "int", "floordiv", "chunk", "split", "permute", "transpose", "expand", "neg", "exp", "sqrt", "rsqrt")


def counters_differ(fvcore: dict[str, Any], dispatch: dict[str, Any]) -> str | None:
    """A row's note where fvcore's count differs from the default counter's: both figures, the compute ops fvcore
    traced without counting, and the ops the dispatch counter counted."""
    if fvcore["macs"] == dispatch["macs"] and fvcore["acts"] == dispatch["acts"]:
        return None
    skipped = [op for op in fvcore.get("unsupported_ops", {}) if not any(k in op.lower() for k in _NO_MACS)]
    counted = ", ".join(f"{op} x{n}" for op, n in dispatch.get("counted_ops", {}).items())
    return (f"fvcore counts {fvcore['macs']:,} MACs per image, the dispatch counter {dispatch['macs']:,}: ops fvcore "
            f"left uncounted: {', '.join(skipped) or 'none with MACs'}; the dispatch counter counted {counted}")


@contextlib.contextmanager
def _fvcore_quiet() -> Iterator[None]:
    """fvcore imports and traces through APIs torch marks deprecated (FutureWarning, DeprecationWarning): the count
    is unaffected, and the warnings are not convbench's to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _as_int(count: Any) -> int:
    # fvcore's handles return a number or a Counter keyed by op name, depending on the handle
    return int(sum(count.values())) if isinstance(count, Counter) else int(count)


def _fvcore_handles() -> dict[str, Any]:
    with _fvcore_quiet():
        from fvcore.nn import jit_handles as jh

    def both(flop_handle, act_name):
        act_handle = jh.generic_activation_jit(act_name)

        def handle(inputs, outputs):
            return Counter({"macs": _as_int(flop_handle(inputs, outputs)), "acts": _as_int(act_handle(inputs, outputs))})

        return handle

    return {
        "aten::_convolution": both(jh.conv_flop_jit, "conv"),
        "aten::addmm": both(jh.addmm_flop_jit, "addmm"),
        "aten::linear": both(jh.linear_flop_jit, "linear"),
        "aten::matmul": both(jh.matmul_flop_jit, "matmul"),
        "aten::mm": both(jh.matmul_flop_jit, "mm"),
        "aten::bmm": both(jh.bmm_flop_jit, "bmm"),
        "aten::einsum": both(jh.einsum_flop_jit, "einsum"),
    }


def fvcore_counts(model: nn.Module, input_shape: tuple[int, ...], by_module: bool = False) -> dict[str, Any]:
    """MACs and activations from one fvcore trace of an eval-mode forward at `input_shape` (batch first).

    Only conv and matmul-like ops have handles: fvcore's batch-norm handle would add BN's elementwise work
    to the total (and overriding it with None does not remove it), so BN, pooling, adds and activations are
    left unhandled on purpose and listed in `unsupported_ops` instead of silently counted or hidden."""
    with _fvcore_quiet():
        from fvcore.nn.jit_analysis import JitModelAnalysis

    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        analysis = JitModelAnalysis(model, (torch.zeros(input_shape, device=device),))
        analysis.set_op_handle(**_fvcore_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        with _fvcore_quiet():
            totals = analysis.by_operator()
        batch = input_shape[0]
        result: dict[str, Any] = {
            "macs": totals.get("macs", 0) // batch,
            "acts": totals.get("acts", 0) // batch,
            "unsupported_ops": dict(sorted(analysis.unsupported_ops().items())),
        }
        if by_module:
            result["modules"] = {
                name: {"macs": c.get("macs", 0) // batch, "acts": c.get("acts", 0) // batch}
                for name, c in analysis.by_module_and_operator().items()
            }
    finally:
        model.train(was_training)
    return result


def flop_counter_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward MACs per image from torch's own FlopCounterMode (which counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2 // input_shape[0]


def _conv_backward_macs(args: tuple, outputs: Any) -> int:
    """grad_input and grad_weight each cost the forward convolution's MACs, for whichever output_mask asks for:
    the first layer's input needs no gradient. (FlopCounterMode in torch 2.13 counts a grouped conv's grad_weight
    once per group too many.)"""
    grad_output, weight, mask = args[0], args[2], args[10]
    forward = grad_output.numel() * weight.shape[1] * math.prod(weight.shape[2:])
    return forward * (int(bool(mask[0])) + int(bool(mask[1])))


def training_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs per image of one training step's forward and backward (conv and matmul-like ops, the auxiliary heads
    included where the model runs them in training), counted on the meta device. `model` must be on meta."""
    was_training = model.training
    model.train()
    try:
        with _counting(model) as tally:
            out = model(torch.zeros(input_shape, device="meta"))
            loss = logits_of(out).float().sum() + sum(a.float().sum() for a in auxiliary(out))
            loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return tally.macs // input_shape[0]


def input_shape_for(name: str, batch_size: int = 1, input_size: int | None = None) -> tuple[int, int, int, int]:
    size = input_size or get_model_info(name).input_size
    return (batch_size, 3, size, size)


def static_summary(name: str, input_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """params, MACs and activations per image from a meta-device build: what `convbench list` prints."""
    model = zoo_model_on_meta(name, **overrides)
    params = count_params(model)
    counts = dispatch_counts(model, input_shape_for(name, 1, input_size))
    return {"params": params, "macs": counts["macs"], "acts": counts["acts"]}

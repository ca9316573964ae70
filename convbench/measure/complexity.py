"""Parameters, MACs and activations.

Convention (ResNet, ResNeXt and Inception papers, torchvision's "GFLOPS", fvcore): one multiply-add is one MAC.
`macs` counts conv and linear/matmul layers only, per image, in an eval-mode forward (so auxiliary heads,
which run only in training, are not counted). `acts` counts the outputs of those layers, as pycls and fvcore do.

Four independent counters exist so the tests can hold them against each other:
- `dispatch_counts`: the figure `profile`, `compare` and the baseline report. It counts the convolution and
  matrix-multiply ops that reach torch's dispatcher during one forward on the meta device: shapes only, no
  weights materialised, no JIT trace, so the whole zoo counts in a few seconds. Ops it sees but does not count
  are listed in `unsupported_ops`, as fvcore lists its own;
- `fvcore_counts`: fvcore's JIT tracer (`--counter fvcore`), on real zero-filled weights; about four times
  slower, and deprecated tracing underneath;
- `analytic_counts`: forward hooks on Conv2d/Linear, N*Cout*Hout*Wout*(Cin/groups)*kh*kw, on meta;
- `flop_counter_macs`: torch.utils.flop_counter, which counts 2 FLOPs per MAC.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from typing import Any

import torch
from torch import nn

from convbench.measure.meta import build_on_meta, fast_batch_norm
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


def analytic_counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-layer MACs and output activations of every Conv2d and Linear, from shapes alone.

    Runs on the meta device whatever device the model is on (a meta copy is not made: the model must be on meta
    or the input is run where the model lives). Returns totals per image plus a per-module table."""
    layers: dict[str, dict[str, int]] = {}
    names = {m: n for n, m in model.named_modules()}
    batch = input_shape[0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        out_elems = output.numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = out_elems * (module.in_channels // module.groups) * kh * kw
        else:
            macs = out_elems * module.in_features
        entry = layers.setdefault(names[module], {"macs": 0, "acts": 0})
        entry["macs"] += macs // batch
        entry["acts"] += out_elems // batch

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    device = next(iter(model.parameters())).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {
        "macs": sum(v["macs"] for v in layers.values()),
        "acts": sum(v["acts"] for v in layers.values()),
        "layers": layers,
    }


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


def dispatch_counts(model: nn.Module, input_shape: tuple[int, ...], by_module: bool = False) -> dict[str, Any]:
    """MACs and activations (outputs of conv and matmul-like ops) per image, from one eval forward on the meta
    device under a dispatch mode. `model` must be on meta (build it with `zoo_model_on_meta` or `spec.build("meta")`)."""
    from torch.utils._python_dispatch import TorchDispatchMode


    stack: list[str] = []
    per_module: dict[str, list[int]] = {}
    totals = [0, 0]
    uncounted: Counter = Counter()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            handle = _MAC_OPS.get(name)
            if handle is None:
                if name not in _NOT_COMPUTE:
                    uncounted[f"aten::{name}"] += 1
                return out
            macs, acts = handle(args, out), out.numel()
            totals[0] += macs
            totals[1] += acts
            for module_name in stack:
                entry = per_module.setdefault(module_name, [0, 0])
                entry[0] += macs
                entry[1] += acts
            return out

    handles = []
    if by_module:
        def push(name):
            return lambda module, inputs: stack.append(name)

        def pop(module, inputs, output):
            stack.pop()
        for name, module in model.named_modules():
            handles += [module.register_forward_pre_hook(push(name)), module.register_forward_hook(pop)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), fast_batch_norm(), _Count():
            logits_of(model(torch.zeros(input_shape, device="meta")))  # a forward convbench cannot use says so here
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    batch = input_shape[0]
    result: dict[str, Any] = {"macs": totals[0] // batch, "acts": totals[1] // batch,
                              "unsupported_ops": dict(sorted(uncounted.items()))}
    if by_module:
        result["modules"] = {name: {"macs": m // batch, "acts": a // batch} for name, (m, a) in per_module.items()}
    return result


COUNTERS = ("dispatch", "fvcore")


def count(model_on_meta: nn.Module, input_shape: tuple[int, ...], counter: str = "dispatch", by_module: bool = False) -> dict[str, Any]:
    """MACs, activations and uncounted ops with the chosen counter; fvcore gets zero-filled real weights."""
    if counter == "fvcore":
        return fvcore_counts(materialize(copy.deepcopy(model_on_meta)), input_shape, by_module=by_module)
    return dispatch_counts(model_on_meta, input_shape, by_module=by_module)


def _as_int(count: Any) -> int:
    # fvcore's handles return a number or a Counter keyed by op name, depending on the handle
    return int(sum(count.values())) if isinstance(count, Counter) else int(count)


def _fvcore_handles() -> dict[str, Any]:
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
    from fvcore.nn.jit_analysis import JitModelAnalysis

    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    try:
        analysis = JitModelAnalysis(model, (torch.zeros(input_shape, device=device),))
        analysis.set_op_handle(**_fvcore_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        with warnings.catch_warnings():
            # fvcore traces through torch.jit, which torch 2.13 marks deprecated; the count is unaffected.
            warnings.simplefilter("ignore", DeprecationWarning)
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

    device = next(iter(model.parameters())).device
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
    from torch.utils._python_dispatch import TorchDispatchMode


    total = [0]

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name == "convolution_backward":
                total[0] += _conv_backward_macs(args, out)
            elif name in _MAC_OPS:
                total[0] += _MAC_OPS[name](args, out)
            return out

    was_training = model.training
    model.train()
    try:
        with fast_batch_norm(), _Count():
            out = model(torch.zeros(input_shape, device="meta"))
            loss = logits_of(out).float().sum() + sum(a.float().sum() for a in auxiliary(out))
            loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return total[0] // input_shape[0]


def input_shape_for(name: str, batch_size: int = 1, input_size: int | None = None) -> tuple[int, int, int, int]:
    size = input_size or get_model_info(name).input_size
    return (batch_size, 3, size, size)


def _drop_batch_norm(module: nn.Module) -> None:
    # On meta, batch norm runs through a slow Python decomposition; it preserves shape and holds no MACs.
    for child_name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, child_name, nn.Identity())
        else:
            _drop_batch_norm(child)


def static_summary(name: str, input_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """params, MACs and activations per image from a meta-device build: what `convbench list` prints."""
    model = zoo_model_on_meta(name, **overrides)
    params = count_params(model)
    _drop_batch_norm(model)
    counts = analytic_counts(model, input_shape_for(name, 1, input_size))
    return {"params": params, "macs": counts["macs"], "acts": counts["acts"]}


def gmacs(macs: int | float) -> float:
    return float("nan") if macs is None or (isinstance(macs, float) and math.isnan(macs)) else macs / 1e9

"""A model's batch-independent counts: parameters from a meta build, MACs and activations from one counted forward,
and with `by_layer` each module's own share of them."""
from __future__ import annotations

from typing import Any

from convbench.measure import complexity
from convbench.zoo.meta import data_dependent
from convbench.zoo.specs import ModelSpec


ZEROS = "counted_on_zeros"  # the key of the reason a forward was counted on real zeros, not on meta


def model_counts(spec: ModelSpec, by_layer: bool = False, counter: str = "dispatch") -> dict[str, Any]:
    """Batch-independent counts: params from a meta build, MACs and activations from one counted forward."""
    meta = spec.meta()
    counts: dict[str, Any] = {"params": complexity.count_params(meta), "param_bytes": complexity.param_bytes(meta)}
    try:
        traced = complexity.count(meta, spec.batch_shape(1), counter, by_module=by_layer)
    except Exception as exc:
        if not data_dependent(exc):
            raise
        meta = complexity.materialize(spec.build("meta"))
        traced = complexity.count(meta, spec.batch_shape(1), counter, by_module=by_layer)
        counts[ZEROS] = complexity.ZEROS_NOTE.format(why=" ".join(str(exc).split())[:80])
    unsupported = ";".join(f"{op}:{n}" for op, n in traced["unsupported_ops"].items())
    counts.update(macs=traced["macs"], other_flops=traced["other_flops"], acts=traced["acts"], unsupported_ops=unsupported)
    if traced.get("note"):
        counts["note"] = traced["note"]
    if by_layer:
        params = {n: sum(p.numel() for p in m.parameters()) for n, m in meta.named_modules()}
        own = self_counts(traced["modules"], [n for n, _ in meta.named_modules()])
        counts["layers"] = [{"model": spec.name, "module": name or "(model)", "params": params.get(name, 0), **c, **own[name]}
                            for name, c in traced["modules"].items()]
    return counts


def self_counts(inclusive: dict[str, dict[str, int]], names: list[str]) -> dict[str, dict[str, int]]:
    """Each module's own MACs and activations: its inclusive count less its direct children's. What a forward
    computes itself (a functional matmul, F.conv2d) is its module's own, so the own counts of all modules add up
    to the model's."""
    children: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        if name:
            children.setdefault(name.rpartition(".")[0], []).append(name)
    zero = {"macs": 0, "acts": 0}
    return {name: {f"self_{k}": c[k] - sum(inclusive.get(ch, zero)[k] for ch in children.get(name, [])) for k in ("macs", "acts")}
            for name, c in inclusive.items()}

"""Counters the tests hold convbench's against, kept out of the package: convbench reports one counter's figures
(convbench.measure.complexity.dispatch_counts); these exist only to prove it right."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


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
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("meta"))
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

"""What convbench takes from a forward: a tensor of logits; from a tuple or list, its first element (the main
head; auxiliary heads follow, as in GoogLeNet and Inception v3 in training); from a dict, its "logits" or "out"
entry (Hugging Face and torchvision's segmentation models). Anything else is said in one line. `--output KEY` or
`--output INDEX` picks another entry: a forward hook hands the picked tensor on in place of the whole output, so
that every measurer, the counters and training alike, sees what the user meant."""
from __future__ import annotations

from typing import Any

import torch

from convbench.errors import RowFailure, UserError

KEYS = ("logits", "out")
TAKES = ("convbench takes a tensor of logits, the first element of a tuple or list, or the 'logits' or 'out' "
         "entry of a dict")


class ForwardOutputError(RowFailure):
    pass


def describe(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        if out and isinstance(out[0], torch.Tensor):
            return out[0]
        first = describe(out[0]) if out else "nothing"
        raise ForwardOutputError(f"the forward returned {describe(out)} whose first element is {first}; {TAKES}")
    if isinstance(out, dict):
        for key in KEYS:
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
        raise ForwardOutputError(f"the forward returned a dict with keys {', '.join(map(repr, list(out)[:5]))}; {TAKES}")
    raise ForwardOutputError(f"the forward returned {describe(out)}; {TAKES}")


def auxiliary(out: Any) -> list[torch.Tensor]:
    """The auxiliary heads' logits: the tensors after the first in a tuple or list."""
    if isinstance(out, (tuple, list)):
        return [t for t in out[1:] if isinstance(t, torch.Tensor)]
    return []


def select(out: Any, selector: str) -> Any:
    """The entry `selector` (a dict's key, or a tuple's or list's index) of a forward's output; one line when the
    forward has no such entry (the same selector applies to every model of a run, so it is bad input)."""
    if isinstance(out, dict):
        if selector in out:
            return out[selector]
        raise UserError(f"--output {selector}: the forward returned a dict with keys "
                        f"{', '.join(map(repr, list(out)[:8]))}, and no {selector!r}")
    if isinstance(out, (tuple, list)):
        try:
            return out[int(selector)]
        except (ValueError, IndexError):
            raise UserError(f"--output {selector}: the forward returned {describe(out)} of {len(out)}; pick one by its "
                            f"index, 0 to {len(out) - 1}") from None
    raise UserError(f"--output {selector}: the forward returned {describe(out)}, which has no entries to pick from")


def pick_output(module: torch.nn.Module, selector: str) -> torch.nn.Module:
    """`module` with its forward's output replaced by the entry `selector` names (convbench.zoo.outputs.select)."""
    module.register_forward_hook(lambda _module, _inputs, out: select(out, selector))
    return module

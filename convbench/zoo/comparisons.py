"""The papers' block-design claims as data: comparison -> cases -> variants, the first variant the baseline.

Claimed ratios are the seed articles' and papers' own arithmetic (cost of the variant / cost of the baseline);
None where the paper gives no figure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from convbench.zoo.blocks.factorized import ConvStack, asymmetric, square
from convbench.zoo.blocks.reduction import ConvThenPool, ParallelPoolConv, PoolThenConv
from convbench.zoo.blocks.resnext import EarlyConcat, GroupedBottleneck, SplitTransformMerge
from convbench.errors import UserError
from convbench.lists import parse_list
from convbench.zoo.registry import get_model_info
from convbench.zoo.specs import resolve_models


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[int], nn.Module]  # channels -> module (whole networks ignore it)
    claimed_ratio: float | None = None


@dataclass(frozen=True)
class CompareCase:
    comparison: str
    name: str
    claim: str
    shape: tuple[int, int, int]  # C, H, W of one input image
    variants: tuple[Variant, ...]
    whole_network: bool = False


def _network(name: str, **overrides) -> Callable[[int], nn.Module]:
    return lambda _channels: get_model_info(name).build(**overrides)


def _conv(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False)


def _factorization() -> list[CompareCase]:
    c = "factorization"
    return [
        CompareCase(c, "5x5 vs two 3x3", "two stacked 3x3 cost 18/25 = 0.72 of one 5x5 (Inception-v3 3.1)", (288, 35, 35), (
            Variant("5x5", lambda ch: ConvStack(ch, square(5))),
            Variant("3x3+3x3", lambda ch: ConvStack(ch, square(3, 2)), 18 / 25))),
        CompareCase(c, "7x7 vs three 3x3", "three stacked 3x3 have 27/49 = 0.55 of a 7x7's weights (VGG)", (288, 35, 35), (
            Variant("7x7", lambda ch: ConvStack(ch, square(7))),
            Variant("3x3+3x3+3x3", lambda ch: ConvStack(ch, square(3, 3)), 27 / 49))),
        CompareCase(c, "3x3 vs two 2x2", "two 2x2 save only 11% of a 3x3 (8/9)", (288, 35, 35), (
            Variant("3x3", lambda ch: ConvStack(ch, square(3))),
            Variant("2x2+2x2", lambda ch: ConvStack(ch, square(2, 2)), 8 / 9))),
        CompareCase(c, "GoogLeNet: 5x5 vs two 3x3 branches",
             "whole network, 224x224; the 5x5s read narrow reductions, so two 3x3 (expanding first) cost more", (3, 224, 224), (
            Variant("googlenet 5x5", _network("googlenet")),
            Variant("googlenet 3x3+3x3", _network("googlenet", branch5x5="3x3x2"))), whole_network=True),
    ]


def _asymmetric() -> list[CompareCase]:
    c = "asymmetric"
    shapes = {3: (1280, 8, 8), 5: (768, 17, 17), 7: (768, 17, 17)}
    cases = [
        CompareCase(c, f"{n}x{n} vs 1x{n}+{n}x1", f"1x{n} then {n}x1 cost 2/{n} = {2 / n:.2f} of an {n}x{n}"
             + (" (33% saving)" if n == 3 else ""), shapes[n], (
                 Variant(f"{n}x{n}", lambda ch, n=n: ConvStack(ch, square(n))),
                 Variant(f"1x{n}+{n}x1", lambda ch, n=n: ConvStack(ch, asymmetric(n)), 2 / n)))
        for n in (3, 5, 7)
    ]
    cases.append(CompareCase(c, "Inception-v3: 7x7 vs 1x7+7x1 at 17x17", "whole network, 299x299", (3, 299, 299), (
        Variant("inception_v3 7x7", _network("inception_v3_7x7")),
        Variant("inception_v3 1x7+7x1", _network("inception_v3_noaux"))), whole_network=True))
    return cases


def _reduction() -> list[CompareCase]:
    return [CompareCase("reduction", "d x d x k -> d/2 x d/2 x 2k", "pool first costs 1/4 (but bottlenecks); parallel branches cheaper still",
                 (288, 35, 35), (
                     Variant("conv then pool", ConvThenPool),
                     Variant("pool then conv", PoolThenConv, 0.25),
                     Variant("parallel conv | pool", ParallelPoolConv)))]


def _grouped() -> list[CompareCase]:
    c = "grouped"
    sweep = ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4))
    return [
        CompareCase(c, "dense vs grouped 3x3, G=32", "G groups cost 1/G of the dense conv", (128, 56, 56), (
            Variant("dense", lambda ch: _conv(ch, ch)),
            Variant("grouped G=32", lambda ch: _conv(ch, ch, groups=32), 1 / 32))),
        CompareCase(c, "ResNeXt block forms, 32x4d", "(a), (b) and (c) are the same function at the same cost", (256, 56, 56), (
            Variant("(c) grouped conv", lambda ch: GroupedBottleneck(ch, 32, 4)),
            Variant("(b) early concat", lambda ch: EarlyConcat(ch, 32, 4), 1.0),
            Variant("(a) split-transform-merge", lambda ch: SplitTransformMerge(ch, 32, 4), 1.0))),
        CompareCase(c, "cardinality at equal complexity", "ResNeXt Table 2: C x d chosen to keep the cost of 1x64d", (256, 56, 56),
             tuple(Variant(f"{card}x{d}d", lambda ch, card=card, d=d: GroupedBottleneck(ch, card, d), None if card == 1 else 1.0)
                   for card, d in sweep)),
    ]


def _alexnet_conv1(lrn: bool) -> Callable[[int], nn.Module]:
    """AlexNet's first stage as the article placed it: conv1 (96 11x11/4), ReLU, then LRN where it had one."""
    from convbench.zoo.models.alexnet import LRN, local_response_norm
    return lambda ch: nn.Sequential(nn.Conv2d(ch, 96, 11, stride=4), nn.ReLU(),
                                    *([local_response_norm(**LRN)] if lrn else []))


def _pooling() -> list[CompareCase]:
    c = "pooling"
    return [
        CompareCase(c, "overlapping 3x3/2 vs 2x2/2 max pooling", "a 3x3 window reads 9 values per output, a 2x2 one 4: "
                    "4/9 = 0.44 of the work, for the same 27x27 grid (AlexNet 3.4: overlapping cut top-1 error 0.4%)",
                    (96, 55, 55), (
                        Variant("3x3/2 overlapping", lambda ch: nn.MaxPool2d(3, stride=2)),
                        Variant("2x2/2", lambda ch: nn.MaxPool2d(2, stride=2), 4 / 9))),
        CompareCase(c, "LRN vs none after conv1", "LRN adds no MACs and its window of 5 channels to every activation "
                    "(AlexNet 3.3: it cut top-1 error 1.4%; 'rarely used now')", (3, 227, 227), (
                        Variant("conv1+ReLU+LRN", _alexnet_conv1(True)),
                        Variant("conv1+ReLU", _alexnet_conv1(False)))),
        CompareCase(c, "AlexNet: two groups on conv2/4/5 vs dense", "whole network, 227x227; groups=2 (one per GPU) "
                    "halve the MACs and weights of conv2, conv4 and conv5 (ResNeXt 2: grouped convolution began here)",
                    (3, 227, 227), (
                        Variant("alexnet_2012 dense", _network("alexnet_2012", groups=1)),
                        Variant("alexnet_2012 groups=2", _network("alexnet_2012"))), whole_network=True),
    ]


COMPARISONS: dict[str, Callable[[], list[CompareCase]]] = {
    "factorization": _factorization,
    "asymmetric": _asymmetric,
    "reduction": _reduction,
    "grouped": _grouped,
    "pooling": _pooling,
}


# `convbench train --compare NAME`: the two sides of a block comparison trained inside the same host network, as
# (label, zoo model, its options).
TRAIN_PAIRS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "googlenet": (("googlenet 5x5", "googlenet", {}), ("googlenet 3x3+3x3", "googlenet", {"branch5x5": "3x3x2"})),
    "inception_v3": (("inception_v3 7x7", "inception_v3_7x7", {}), ("inception_v3 1x7+7x1", "inception_v3_noaux", {})),
    # Inception-v3 section 4: the auxiliary head helps only late in training, as a regulariser; what it costs a step.
    "inception_v3_aux": (("inception_v3 with aux head", "inception_v3", {}),
                         ("inception_v3 without", "inception_v3", {"aux_logits": False})),
}


def designs_case(names: list[str], shape: tuple[int, int, int] | None = None,
                 claims: tuple[float, ...] | None = None, output: str | None = None) -> CompareCase:
    """A user's own comparison: the first design the baseline, the others its variants. A design is a zoo model or a
    `package.module:function` returning a module (a block or a whole network); `claims` are the variants' claimed
    costs over the baseline, where the user has arithmetic to put to the test."""
    if len(names) < 2:
        raise UserError("compare takes a comparison's name, or two or more designs to put side by side (the first is "
                        "the baseline)")
    specs = resolve_models(",".join(names), shape, output)
    if len({s.name for s in specs}) < len(names):
        raise UserError(f"compare {' '.join(names)}: a design is named twice")
    shapes = {s.input_shape for s in specs}
    if len(shapes) > 1:
        raise UserError(f"the designs take different inputs ({' and '.join('x'.join(map(str, s)) for s in sorted(shapes))}); "
                        "give them one with --shape C,H,W")
    claims = tuple(claims or ())
    if len(claims) not in (0, len(specs) - 1):
        raise UserError(f"--claim gives {len(claims)} ratio{'s' if len(claims) != 1 else ''} for {len(specs) - 1} "
                        f"variant{'s' if len(specs) > 2 else ''}")
    variants = tuple(Variant(s.name, lambda _channels, s=s: s.instantiate(), None if i == 0 else (claims[i - 1] if claims else None))
                     for i, s in enumerate(specs))
    claim = ", ".join(f"{v.name}: {v.claimed_ratio:g} of {specs[0].name}" for v in variants[1:] if v.claimed_ratio) or \
        "no claim given (--claim R gives one)"
    return CompareCase("designs", " vs ".join(s.name for s in specs), claim, specs[0].input_shape, variants,
                whole_network=all(s.family != "custom" for s in specs))


def get_cases(name: str, shape: tuple[int, int, int] | None = None, claims: tuple[float, ...] | None = None,
              output: str | None = None) -> list[CompareCase]:
    """The cases of a comparison by its name, 'all', or a comma list of two or more designs (designs_case)."""
    if name == "all":
        return [case for build in COMPARISONS.values() for case in build()]
    if name in COMPARISONS:
        return COMPARISONS[name]()
    parts = list(parse_list(name, "the designs to compare"))
    if len(parts) > 1 or ":" in name:
        return [designs_case(parts, shape, claims, output)]
    raise UserError(f"unknown comparison {name!r}; choose one of {', '.join([*COMPARISONS, 'all'])}, or name two designs "
                    "(zoo models or package.module:function) to compare")

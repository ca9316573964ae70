"""Spatial factorisations (Inception-v3 section 3, VGG): one large conv vs a stack of smaller ones.

Every conv is conv -> BN -> ReLU (ConvBNAct) with the same width throughout, so a stack's extra
non-linearities come with it, as the papers intend, and MACs differ only by kernel area."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from convbench.zoo.layers import ConvBNAct


class ConvStack(nn.Module):
    """Convs of the given kernel shapes in sequence, channels -> channels, spatial size preserved.

    Even kernels (2x2) cannot pad symmetrically: each gets one row and column of zeros on the far side."""

    def __init__(self, channels: int, kernels: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for kh, kw in kernels:
            if kh % 2 == 0 or kw % 2 == 0:
                layers.append(nn.ZeroPad2d((0, 1 - kw % 2, 0, 1 - kh % 2)))
            layers.append(ConvBNAct(channels, channels, (kh, kw), padding=(kh // 2 if kh % 2 else (kh - 1) // 2,
                                                                           kw // 2 if kw % 2 else (kw - 1) // 2)))
        self.body = nn.Sequential(*layers)
        self.kernels = list(kernels)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def square(n: int, times: int = 1) -> list[tuple[int, int]]:
    return [(n, n)] * times


def asymmetric(n: int) -> list[tuple[int, int]]:
    return [(1, n), (n, 1)]

"""Grid reduction (Inception-v3 section 5): d x d x k -> d/2 x d/2 x 2k, three ways.

- conv_then_pool: a stride-1 conv to 2k on the large grid, then a max pool: expensive.
- pool_then_conv: pool first, conv on the small grid: a quarter of the cost, but the pooled k-channel grid is a
  representational bottleneck.
- parallel: a stride-2 conv (k -> k) beside a stride-2 max pool (k channels), concatenated: cheaper still, no
  bottleneck (the paper's Figure 10, in its simplest form).
All pools are 3x3/2 and all convs 3x3, so every variant lands on the same grid (35 -> 17)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from convbench.zoo.layers import ConvBNAct


class ConvThenPool(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(channels, 2 * channels, 3)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(x))


class PoolThenConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=2)
        self.conv = ConvBNAct(channels, 2 * channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


class ParallelPoolConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(channels, channels, 3, stride=2, padding=0)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.pool(x)], 1)

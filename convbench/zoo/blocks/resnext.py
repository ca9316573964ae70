"""ResNeXt's aggregated transformation in its three equivalent forms (Xie et al. 2016, Figure 3).

(a) split-transform-merge: C paths of 1x1 (in -> d), 3x3 (d -> d), 1x1 (d -> out), outputs summed;
(b) early concatenation: C paths of 1x1 and 3x3, concatenated, one 1x1 (C*d -> out);
(c) grouped convolution: 1x1 (in -> C*d), 3x3 with C groups, 1x1 (C*d -> out).
Batch norm is per channel, so per-path BNs in (a)/(b) are slices of (c)'s, and the BN after the merge is
shared; `load_from_grouped` maps (c)'s weights into (a) or (b), which then compute the same function."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _bn_slice(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, lo: int, hi: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[lo:hi])


class GroupedBottleneck(nn.Module):
    """Form (c); cardinality 1 is the dense ResNet bottleneck."""

    def __init__(self, in_channels: int, cardinality: int, width: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        inner = cardinality * width
        self.cardinality, self.width = cardinality, width
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + x)


class _Path(nn.Module):
    def __init__(self, in_channels: int, width: int, out_channels: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False) if out_channels else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.conv3(out) if self.conv3 is not None else out


class SplitTransformMerge(nn.Module):
    """Form (a): every path ends in its own 1x1 to the output width; the paths' outputs are summed."""

    def __init__(self, in_channels: int, cardinality: int, width: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.paths = nn.ModuleList(_Path(in_channels, width, out_channels) for _ in range(cardinality))
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        total = self.paths[0](x)
        for path in self.paths[1:]:
            total = total + path(x)
        return self.relu(self.bn3(total) + x)


class EarlyConcat(nn.Module):
    """Form (b): the paths' 3x3 outputs are concatenated and merged by one 1x1."""

    def __init__(self, in_channels: int, cardinality: int, width: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.paths = nn.ModuleList(_Path(in_channels, width, None) for _ in range(cardinality))
        self.conv3 = nn.Conv2d(cardinality * width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([path(x) for path in self.paths], 1)
        return self.relu(self.bn3(self.conv3(out)) + x)


@torch.no_grad()
def load_from_grouped(target: SplitTransformMerge | EarlyConcat, source: GroupedBottleneck) -> None:
    """Copy (c)'s weights into (a) or (b): path i takes channels [i*d, (i+1)*d) of every inner layer."""
    d = source.width
    weight2 = source.conv2.weight  # (C*d, d, 3, 3): group i's filters are rows i*d..(i+1)*d
    for i, path in enumerate(target.paths):
        lo, hi = i * d, (i + 1) * d
        path.conv1.weight.copy_(source.conv1.weight[lo:hi])
        _bn_slice(path.bn1, source.bn1, lo, hi)
        path.conv2.weight.copy_(weight2[lo:hi])
        _bn_slice(path.bn2, source.bn2, lo, hi)
        if path.conv3 is not None:
            path.conv3.weight.copy_(source.conv3.weight[:, lo:hi])
    if isinstance(target, EarlyConcat):
        target.conv3.weight.copy_(source.conv3.weight)
    target.bn3.load_state_dict(source.bn3.state_dict())

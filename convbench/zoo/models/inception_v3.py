"""Inception v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture"), as released (Mixed_5b ... Mixed_7c).

`seven` chooses how the 17x17 modules (Mixed_6b-6e) get their 7x7 receptive field: "asym", the paper's
1x7 followed by 7x1, or "full", a plain 7x7 in place of each pair; `compare` and `train --compare` use it to
put the factorisation to the test inside the whole network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convbench.zoo.layers import InceptionBatchNorm, conv_block_factory
from convbench.zoo.registry import register_model

Conv = conv_block_factory(InceptionBatchNorm)


def _avg_pool_3x3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(in_channels, 64, 1)
        self.branch5x5 = nn.Sequential(Conv(in_channels, 48, 1), Conv(48, 64, 5))
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 64, 1), Conv(64, 96, 3), Conv(96, 96, 3))
        self.branch_pool = Conv(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(_avg_pool_3x3(x))], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: parallel stride-2 convs and a stride-2 max pool (the paper's Figure 10)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = Conv(in_channels, 384, 3, stride=2, padding=0)
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 64, 1), Conv(64, 96, 3), Conv(96, 96, 3, stride=2, padding=0))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def seven_by_seven(cin: int, cmid: int, cout: int, seven: str, first: str = "1x7") -> list[nn.Module]:
    """A 7x7 receptive field from cin to cout: "asym" is 1x7 then 7x1 (or 7x1 then 1x7), "full" one 7x7."""
    if seven == "full":
        return [Conv(cin, cout, 7)]
    if seven != "asym":
        raise ValueError(f"seven must be 'asym' or 'full', not {seven!r}")
    kernels = [(1, 7), (7, 1)] if first == "1x7" else [(7, 1), (1, 7)]
    return [Conv(cin, cmid, kernels[0]), Conv(cmid, cout, kernels[1])]


class InceptionC(nn.Module):
    """17x17: 1x1 | 1x1 -> 7x7 | 1x1 -> 7x7 -> 7x7 | avg pool -> 1x1, each 7x7 factorised or not."""

    def __init__(self, in_channels: int, channels_7x7: int, seven: str = "asym") -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = Conv(in_channels, 192, 1)
        self.branch7x7 = nn.Sequential(Conv(in_channels, c7, 1), *seven_by_seven(c7, c7, 192, seven))
        self.branch7x7dbl = nn.Sequential(
            Conv(in_channels, c7, 1),
            *seven_by_seven(c7, c7, c7, seven, first="7x1"),
            *seven_by_seven(c7, c7, 192, seven, first="7x1"),
        )
        self.branch_pool = Conv(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(_avg_pool_3x3(x))], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = nn.Sequential(Conv(in_channels, 192, 1), Conv(192, 320, 3, stride=2, padding=0))
        self.branch7x7x3 = nn.Sequential(
            Conv(in_channels, 192, 1), Conv(192, 192, (1, 7)), Conv(192, 192, (7, 1)), Conv(192, 192, 3, stride=2, padding=0),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch7x7x3(x), F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8: the expanded filter bank, whose 3x3s split into parallel 1x3 and 3x1 outputs (the paper's Figure 7)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(in_channels, 320, 1)
        self.branch3x3_1 = Conv(in_channels, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3))
        self.branch3x3_2b = Conv(384, 384, (3, 1))
        self.branch3x3dbl_1 = Conv(in_channels, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1))
        self.branch_pool = Conv(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(_avg_pool_3x3(x)),
        ], 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = Conv(in_channels, 128, 1)
        self.conv1 = Conv(128, 768, 5, padding=0)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InceptionV3(nn.Module):
    """The auxiliary head on Mixed_6e runs only in training mode; then the forward returns (logits, aux)."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, seven: str = "asym", dropout: float = 0.5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            Conv(3, 32, 3, stride=2, padding=0), Conv(32, 32, 3, padding=0), Conv(32, 64, 3),
            nn.MaxPool2d(3, stride=2),
            Conv(64, 80, 1), Conv(80, 192, 3, padding=0),
            nn.MaxPool2d(3, stride=2),
        )
        self.grid35 = nn.Sequential(InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288))
        self.grid17 = nn.Sequential(*(InceptionC(768, c7, seven) for c7 in (128, 160, 160, 192)))
        self.aux = InceptionAux(768, num_classes) if aux_logits else None
        self.grid8 = nn.Sequential(InceptionD(768), InceptionE(1280), InceptionE(2048))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(2048, num_classes))

    def forward(self, x: Tensor):
        x = self.grid17(self.grid35(self.stem(x)))
        aux = self.aux(x) if self.aux is not None and self.training else None
        logits = self.head(self.grid8(x))
        return (logits, aux) if aux is not None else logits


_PAPER = "Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision"
register_model(
    "inception_v3", InceptionV3, family="inception_v3", input_size=299, paper=_PAPER,
    notes="as released; aux head on: its params counted, its MACs not (it runs only in training)",
)
register_model(
    "inception_v3_noaux", InceptionV3, family="inception_v3", input_size=299, paper=_PAPER,
    notes="as released, without the auxiliary head", aux_logits=False,
)
register_model(
    "inception_v3_7x7", InceptionV3, family="inception_v3", input_size=299, paper=_PAPER,
    notes="each 1x7+7x1 pair of Mixed_6b-6e replaced by one 7x7 (the unfactorised baseline); no aux head",
    aux_logits=False, seven="full",
)

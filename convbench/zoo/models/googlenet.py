"""GoogLeNet / Inception v1 (Szegedy et al. 2014) and the Inception module it shares with BN-Inception.

The paper's "5x5" branch is the point of contention: the paper has a 5x5 conv there, torchvision's port has a
3x3 (its own source calls it a known bug), and BN-Inception replaces it with two stacked 3x3. All three are the
`deep_kernels` argument of one module."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from convbench.zoo.layers import ConvBNAct, InceptionBatchNorm, conv_block_factory
from convbench.zoo.registry import register_model

DEEP_BRANCH = {"5x5": (5,), "3x3": (3,), "3x3x2": (3, 3)}


class InceptionModule(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> deep branch | pool -> 1x1, concatenated.

    With stride 2 (BN-Inception's 3c and 4e) the 1x1 branch is dropped, the last conv of each branch and the
    max pool stride by 2, and the pool branch passes its input through unprojected (pool_proj=0)."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch_deep_red: int,
        ch_deep: int,
        pool_proj: int,
        conv_block: Callable[..., nn.Module] = ConvBNAct,
        deep_kernels: Sequence[int] = (5,),
        pool: str = "max",
        stride: int = 1,
    ) -> None:
        super().__init__()
        if stride != 1 and ch1x1:
            raise ValueError("a strided Inception module has no 1x1 branch")
        self.branch1 = conv_block(in_channels, ch1x1, 1) if ch1x1 else None
        self.branch2 = nn.Sequential(conv_block(in_channels, ch3x3red, 1), conv_block(ch3x3red, ch3x3, 3, stride=stride))
        deep: list[nn.Module] = [conv_block(in_channels, ch_deep_red, 1)]
        channels = ch_deep_red
        for i, k in enumerate(deep_kernels):
            last = i == len(deep_kernels) - 1
            deep.append(conv_block(channels, ch_deep, k, stride=stride if last else 1))
            channels = ch_deep
        self.branch3 = nn.Sequential(*deep)
        if stride != 1:
            pool_layer: nn.Module = nn.MaxPool2d(3, stride=stride, padding=1)
        elif pool == "max":
            pool_layer = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        elif pool == "avg":
            pool_layer = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        else:
            raise ValueError(f"pool must be 'max' or 'avg', not {pool!r}")
        self.branch4 = nn.Sequential(pool_layer, conv_block(in_channels, pool_proj, 1)) if pool_proj else pool_layer
        self.out_channels = ch1x1 + ch3x3 + ch_deep + (pool_proj or in_channels)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            branches.insert(0, self.branch1(x))
        return torch.cat(branches, 1)


class GoogLeNetAux(nn.Module):
    """The auxiliary classifier on 4a and 4d: 5x5/3 average pool (4x4 output), 1x1 conv, two FC layers."""

    def __init__(self, in_channels: int, num_classes: int, conv_block: Callable[..., nn.Module], dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = conv_block(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.pool(x)).flatten(1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


def inception_stem(block: Callable[..., nn.Module]) -> nn.Sequential:
    """GoogLeNet's stem, kept by BN-Inception: 7x7/2, max pool, 1x1, 3x3 to 192, max pool (224 -> 28)."""
    return nn.Sequential(
        block(3, 64, 7, stride=2, padding=3),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        block(64, 64, 1),
        block(64, 192, 3),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
    )


# in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj (the paper's Table 1)
GOOGLENET_MODULES = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """In training mode with aux_logits the forward returns (logits, aux 4d, aux 4a); otherwise logits."""

    def __init__(
        self,
        num_classes: int = 1000,
        branch5x5: str = "5x5",
        aux_logits: bool = False,
        batch_norm: bool = True,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        if branch5x5 not in DEEP_BRANCH:
            raise ValueError(f"branch5x5 must be one of {sorted(DEEP_BRANCH)}")
        block = conv_block_factory(InceptionBatchNorm if batch_norm else None)
        self.stem = inception_stem(block)
        inc = {k: InceptionModule(*v, conv_block=block, deep_kernels=DEEP_BRANCH[branch5x5]) for k, v in GOOGLENET_MODULES.items()}
        self.stage3 = nn.Sequential(inc["3a"], inc["3b"], nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.inception4a = inc["4a"]
        self.stage4_mid = nn.Sequential(inc["4b"], inc["4c"], inc["4d"])
        self.stage4_end = nn.Sequential(inc["4e"], nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.stage5 = nn.Sequential(inc["5a"], inc["5b"])
        self.aux1 = GoogLeNetAux(512, num_classes, block) if aux_logits else None
        self.aux2 = GoogLeNetAux(528, num_classes, block) if aux_logits else None
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(1024, num_classes))

    def forward(self, x: Tensor):
        x = self.inception4a(self.stage3(self.stem(x)))
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.stage4_mid(x)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        logits = self.head(self.stage5(self.stage4_end(x)))
        if aux1 is not None:
            return logits, aux2, aux1
        return logits


_PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions"
register_model(
    "googlenet", GoogLeNet, family="googlenet", paper=_PAPER,
    notes="true 5x5 branches as in the paper; BN after each conv as in torchvision's port; aux heads off",
)
register_model(
    "googlenet_tv", GoogLeNet, family="googlenet", paper=_PAPER,
    notes="torchvision's layout: 3x3 where the paper has 5x5 (its 'known bug'); aux heads off", branch5x5="3x3",
)

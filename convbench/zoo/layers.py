"""The few pieces every family is built from. Norm and activation are injected so that one block serves
the BN, no-norm (the original GoogLeNet) and pre-activation variants."""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]

# Google's Inception releases (and torchvision's ports of them) use eps=1e-3.
InceptionBatchNorm = partial(nn.BatchNorm2d, eps=0.001)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_padding(kernel_size: int | Sequence[int]) -> tuple[int, int]:
    kh, kw = _pair(kernel_size)
    return ((kh - 1) // 2, (kw - 1) // 2)


class ConvBNAct(nn.Module):
    """conv -> norm -> activation. Without a norm the conv gets a bias, as in the pre-BN papers."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int = 1,
        padding: int | Sequence[int] | None = None,
        groups: int = 1,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        act_layer: ActLayer | None = partial(nn.ReLU, inplace=True),
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            groups=groups, bias=norm_layer is None,
        )
        self.bn = norm_layer(out_channels) if norm_layer is not None else nn.Identity()
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def conv_block_factory(norm_layer: NormLayer | None, act_layer: ActLayer | None = partial(nn.ReLU, inplace=True)):
    """A ConvBNAct constructor with the norm and activation fixed, for injection into Inception modules."""
    return partial(ConvBNAct, norm_layer=norm_layer, act_layer=act_layer)


def classifier_head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global average pool, dropout, linear: the head of every family after VGG."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)

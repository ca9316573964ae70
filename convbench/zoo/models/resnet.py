"""ResNet v1 / v1.5 / v2 (pre-activation), ResNeXt and Wide ResNet: one network class, four block classes.

Forks made explicit:
- v1.5 (default, torchvision): a down-sampling bottleneck strides in its 3x3. v1 (`stride_in_1x1=True`, the
  paper and Caffe release): it strides in the first 1x1, so the 3x3 runs on the smaller grid (3.8 vs 4.1 GMACs
  for ResNet-50).
- v2 (He et al. 2016, Identity Mappings): BN-ReLU before each conv, projections take the pre-activated input,
  one BN-ReLU after the last stage; the stem is conv+max pool with no norm of its own (as in timm's ResNetV2).
- ResNeXt and Wide ResNet are nothing but `groups` and `width_per_group`."""
from __future__ import annotations

from typing import Type, Union

from torch import Tensor, nn

from convbench.zoo.registry import register_model


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def bottleneck_width(planes: int, groups: int, base_width: int) -> int:
    """Channels of a bottleneck's 3x3: ResNeXt's C x d, scaled with the stage (planes/64)."""
    return int(planes * (base_width / 64.0)) * groups


def _plain_width_only(groups: int, base_width: int) -> None:
    if groups != 1 or base_width != 64:
        raise ValueError("the basic block takes no groups or width_per_group")


class BasicBlock(nn.Module):
    expansion = 1
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False) -> None:
        super().__init__()
        _plain_width_only(groups, base_width)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4
    preact = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = bottleneck_width(planes, groups, base_width)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class PreActBasicBlock(nn.Module):
    expansion = 1
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False) -> None:
        super().__init__()
        _plain_width_only(groups, base_width)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        return self.conv2(self.relu(self.bn2(out))) + shortcut


class PreActBottleneck(nn.Module):
    expansion = 4
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = bottleneck_width(planes, groups, base_width)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out))) + shortcut


Block = Type[Union[BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck]]
BLOCKS: dict[str, tuple[Block, Block]] = {  # (v1/v1.5, v2)
    "basic": (BasicBlock, PreActBasicBlock),
    "bottleneck": (Bottleneck, PreActBottleneck),
}
DEPTHS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
          101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, version: str = "v1.5", groups: int = 1, width_per_group: int = 64,
                 num_classes: int = 1000, zero_init_residual: bool = False) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}")
        if version not in ("v1", "v1.5", "v2"):
            raise ValueError("version must be 'v1', 'v1.5' or 'v2'")
        kind, layers = DEPTHS[depth]
        block = BLOCKS[kind][version == "v2"]
        self.preact = block.preact
        self.groups, self.base_width = groups, width_per_group
        self.stride_in_1x1 = version == "v1"
        self.inplanes = 64
        stem: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)]
        if not self.preact:
            stem += [nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        features = 512 * block.expansion
        self.final_act = nn.Sequential(nn.BatchNorm2d(features), nn.ReLU(inplace=True)) if self.preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual and not self.preact:
            for m in self.modules():
                last_bn = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None) if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            projection = conv1x1(self.inplanes, out_channels, stride)
            downsample = projection if self.preact else nn.Sequential(projection, nn.BatchNorm2d(out_channels))
        common = dict(groups=self.groups, base_width=self.base_width, stride_in_1x1=self.stride_in_1x1)
        layers = [block(self.inplanes, planes, stride, downsample, **common)]
        self.inplanes = out_channels
        layers += [block(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(self.final_act(x)).flatten(1))


_RESNET = "He et al. 2015, Deep Residual Learning for Image Recognition"
_PREACT = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_RESNEXT = "Xie et al. 2016, Aggregated Residual Transformations for Deep Neural Networks"
_WIDE = "Zagoruyko & Komodakis 2016, Wide Residual Networks (ImageNet variant)"

for _depth in DEPTHS:
    register_model(f"resnet{_depth}", ResNet, family="resnet", paper=_RESNET,
                   notes="v1.5: stride on the 3x3 (torchvision)" if DEPTHS[_depth][0] == "bottleneck" else "", depth=_depth)
    if DEPTHS[_depth][0] == "bottleneck":  # basic blocks have no 1x1: v1 and v1.5 are the same network
        register_model(f"resnet{_depth}_v1", ResNet, family="resnet", paper=_RESNET,
                       notes="v1: stride on the first 1x1, as the paper", depth=_depth, version="v1")
    register_model(f"resnet{_depth}_v2", ResNet, family="resnet_v2", paper=_PREACT,
                   notes="pre-activation", depth=_depth, version="v2")

for _name, _depth, _groups, _width, _notes in (
    ("resnext50_32x4d", 50, 32, 4, "Table 2's 32x4d"),
    ("resnext101_32x8d", 101, 32, 8, ""),
    ("resnext101_64x4d", 101, 64, 4, ""),
    # ResNeXt paper Table 2: equal-complexity ResNeXt-50 (1x64d is ResNet-50 itself)
    ("resnext50_1x64d", 50, 1, 64, "Table 2: cardinality 1 (= resnet50)"),
    ("resnext50_2x40d", 50, 2, 40, "Table 2: equal complexity, cardinality 2"),
    ("resnext50_4x24d", 50, 4, 24, "Table 2: equal complexity, cardinality 4"),
    ("resnext50_8x14d", 50, 8, 14, "Table 2: equal complexity, cardinality 8"),
):
    register_model(_name, ResNet, family="resnext", paper=_RESNEXT, notes=_notes,
                   depth=_depth, groups=_groups, width_per_group=_width)

register_model("wide_resnet50_2", ResNet, family="wide_resnet", paper=_WIDE,
               notes="bottleneck 3x3 twice as wide", depth=50, width_per_group=128)
register_model("wide_resnet101_2", ResNet, family="wide_resnet", paper=_WIDE,
               notes="bottleneck 3x3 twice as wide", depth=101, width_per_group=128)

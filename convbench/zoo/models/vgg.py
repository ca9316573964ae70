"""VGG as a configuration table fed to one layer builder (Simonyan & Zisserman 2014, configurations A, B, D, E)."""
from __future__ import annotations

from typing import Union

from torch import Tensor, nn

from convbench.zoo.registry import register_model

# Numbers are 3x3 conv widths, "M" a 2x2/2 max pool.
CONFIGS: dict[str, list[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(config: list[Union[int, str]], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, config: str = "D", batch_norm: bool = False, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"VGG config must be one of {sorted(CONFIGS)}")
        self.features = make_features(CONFIGS[config], batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


_PAPER = "Simonyan & Zisserman 2014, Very Deep Convolutional Networks"
for _depth, _config in (("11", "A"), ("13", "B"), ("16", "D"), ("19", "E")):
    register_model(f"vgg{_depth}", VGG, family="vgg", paper=_PAPER, notes=f"configuration {_config}", config=_config)
    register_model(
        f"vgg{_depth}_bn", VGG, family="vgg", paper=_PAPER,
        notes=f"configuration {_config} with batch norm after every conv", config=_config, batch_norm=True,
    )

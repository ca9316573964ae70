"""BN-Inception / Inception v2 (Ioffe & Szegedy 2015, "Batch Normalization", Figure 5 and Appendix).

GoogLeNet's 5x5 branch becomes two stacked 3x3 (the "double 3x3"), BN follows every conv, some pools are
averages, and modules 3c and 4e reduce the grid by stride-2 branches beside a max pool. The paper's table lists
4c and 4d as 576 channels wide, but its own branch widths add up to 608 (and 1056 after 4e); the released
Caffe model, and this one, follow the branch widths."""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from convbench.zoo.layers import classifier_head, conv_block_factory
from convbench.zoo.models.googlenet import InceptionModule, inception_stem
from convbench.zoo.registry import register_model

# in, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool proj, pool, stride
BN_INCEPTION_MODULES = [
    ("3a", 192, 64, 64, 64, 64, 96, 32, "avg", 1),
    ("3b", 256, 64, 64, 96, 64, 96, 64, "avg", 1),
    ("3c", 320, 0, 128, 160, 64, 96, 0, "max", 2),
    ("4a", 576, 224, 64, 96, 96, 128, 128, "avg", 1),
    ("4b", 576, 192, 96, 128, 96, 128, 128, "avg", 1),
    ("4c", 576, 160, 128, 160, 128, 160, 128, "avg", 1),
    ("4d", 608, 96, 128, 192, 160, 192, 128, "avg", 1),
    ("4e", 608, 0, 128, 192, 192, 256, 0, "max", 2),
    ("5a", 1056, 352, 192, 320, 160, 224, 128, "avg", 1),
    ("5b", 1024, 352, 192, 320, 192, 224, 128, "max", 1),
]


class BNInception(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        block = conv_block_factory(nn.BatchNorm2d)
        self.stem = inception_stem(block)
        modules = {}
        for name, cin, c1, c3r, c3, cdr, cd, proj, pool, stride in BN_INCEPTION_MODULES:
            modules[f"inception{name}"] = InceptionModule(
                cin, c1, c3r, c3, cdr, cd, proj, conv_block=block, deep_kernels=(3, 3), pool=pool, stride=stride,
            )
        self.inceptions = nn.Sequential(OrderedDict(modules))
        self.head = classifier_head(1024, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.inceptions(self.stem(x)))


register_model(
    "bn_inception", BNInception, family="bn_inception",
    paper="Ioffe & Szegedy 2015, Batch Normalization (Inception with BN, a.k.a. Inception v2)",
    notes="double 3x3 instead of 5x5; stride-2 modules 3c, 4e; 4c/4d are 608 wide (branch sums, not the table's 576)",
)

"""AlexNet twice: as the 2012 article published it (two towers as groups=2, local response normalisation,
overlapping pooling, 227x227 input), and in its single-tower form ("One weird trick", Krizhevsky 2014), as
torchvision and most tools ship it."""
from __future__ import annotations

from torch import Tensor, nn

from convbench.zoo.registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


# The article's normalisation constants (section 3.3): k = 2, n = 5, alpha = 1e-4, beta = 0.75. torch, like Caffe's
# reference model, divides alpha by n inside the sum.
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def local_response_norm(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> nn.LocalResponseNorm:
    from convbench.errors import UserError
    if not (isinstance(size, int) and size >= 1 and alpha >= 0 and beta > 0 and k > 0):
        raise UserError(f"local response normalisation needs a size of at least 1, alpha >= 0, beta > 0 and k > 0; got "
                        f"size {size}, alpha {alpha}, beta {beta}, k {k}")
    return nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)


class AlexNet2012(nn.Module):
    """The two-GPU network of the article: conv2, conv4 and conv5 see only their own tower's half of the channels
    (groups=2); conv3 and the fully connected layers see both. `groups=1` makes every layer dense, `lrn=False` drops
    the normalisation and `pool=2` pools 2x2/2 instead of the overlapping 3x3/2 (the article's section 3.4):
    the variants `convbench compare pooling` holds against each other."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, groups: int = 2, lrn: bool = True,
                 pool: int = 3) -> None:
        super().__init__()
        def norm() -> list[nn.Module]:
            return [local_response_norm(**LRN)] if lrn else []
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4), nn.ReLU(inplace=True), *norm(),
            nn.MaxPool2d(kernel_size=pool, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups), nn.ReLU(inplace=True), *norm(),
            nn.MaxPool2d(kernel_size=pool, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=pool, stride=2),
        )
        # The article's network has no such layer: at 227x227 the grid is 6x6 and it is skipped, so the counts and the
        # saved bytes are the published network's; other inputs are pooled to 6x6, as every zoo model takes them.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if tuple(x.shape[-2:]) != (6, 6):
            x = self.avgpool(x)
        return self.classifier(x)


register_model(
    "alexnet", AlexNet, family="alexnet",
    paper="Krizhevsky 2014, One weird trick for parallelizing CNNs (single-tower AlexNet)",
    notes="torchvision's single-tower variant (64/192/384/256/256 filters, no LRN); the article's net is alexnet_2012",
)
register_model(
    "alexnet_2012", AlexNet2012, family="alexnet", input_size=227,
    paper="Krizhevsky 2012, ImageNet Classification with Deep Convolutional Neural Networks (with Sutskever, Hinton)",
    notes="96/256/384/384/256 filters, groups=2 on conv2/4/5 (the two GPUs), LRN k=2 n=5 alpha=1e-4 beta=0.75 after "
          "conv1 and conv2, overlapping 3x3/2 max pooling, dropout 0.5 on fc6/fc7; 227x227 input",
)

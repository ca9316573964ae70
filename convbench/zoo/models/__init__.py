"""One module per family; importing them fills the registry."""
from convbench.zoo.models import alexnet, bn_inception, googlenet, inception_v3, resnet, vgg  # noqa: F401

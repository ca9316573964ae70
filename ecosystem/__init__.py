"""convbench against the installed timm and torchvision (a job of its own: .ci/run)."""

"""Models the battery measures through `--arch package.module:function`, the way a user's models are."""
from __future__ import annotations

import os
import signal

import torch
from torch import nn


class _KillsAtBatch2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 2 and x.device.type != "meta" and not torch.jit.is_tracing():
            os.kill(os.getpid(), signal.SIGKILL)
        return self.conv(x).mean((2, 3))


def killer() -> nn.Module:
    """Kills its own process at batch 2, as a CUDA illegal memory access or the OOM killer would."""
    return _KillsAtBatch2()


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def tiny10() -> nn.Module:
    """tiny with ten classes: it trains on the synthetic data."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


class Sleeps(nn.Module):
    """A forward of known duration on the CPU."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time
        time.sleep(self.seconds)
        return x

"""The machine and software behind a run: env.json, the source commit, the CPU's name, and the time."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from convbench._version import __version__
from convbench.measure.host import cpu_name, now

PACKAGE = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """The source's commit: from git in a checkout, else the one recorded when the wheel was built (setup.py)."""
    if (PACKAGE.parent / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(PACKAGE.parent), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return (PACKAGE / "_commit.txt").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def environment(device: str) -> dict[str, Any]:
    """env.json: the machine and software behind a results folder."""
    env: dict[str, Any] = {
        "convbench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "created": now(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        env["gpu"] = {"name": props.name, "memory_bytes": props.total_memory, "capability": f"{props.major}.{props.minor}",
                      "multiprocessors": props.multi_processor_count}
        try:
            env["gpu"]["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                                  capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    from importlib.metadata import PackageNotFoundError, version
    try:  # read from its metadata: importing fvcore costs time and, on newer torch, a warning
        env["fvcore"] = version("fvcore")
    except PackageNotFoundError:  # fvcore's absence is recorded, not fatal here
        env["fvcore"] = None
    return env


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()

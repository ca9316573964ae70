"""The ecosystem job: convbench against timm and torchvision themselves, in an environment that has both
(.ci/run builds it: torch 2.14.1, torchvision 0.29.1, timm). Without them these tests fail at import, never skip:
a job that cannot see the libraries has checked nothing."""
from __future__ import annotations

import timm  # noqa: F401  (required: see above)
import torchvision  # noqa: F401
import pytest


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    """Its own count cache and peers folder and a fixed terminal width, as the main tests have."""
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CONVBENCH_PEERS_DIR", str(tmp_path_factory.mktemp("peers")))
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("CONVBENCH_CACHE", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

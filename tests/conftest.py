import json
from pathlib import Path

import pytest
import torch

BASELINE = Path(__file__).parent.parent / "results" / "baseline" / "static.json"


@pytest.fixture(scope="session")
def zoo_counts() -> dict:
    """The committed exact counts (`convbench baseline --update` writes them)."""
    return json.loads(BASELINE.read_text())["models"]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)

import json
from pathlib import Path

import pytest
import torch

BASELINE = Path(__file__).parent.parent / "results" / "baseline" / "static.json"


@pytest.fixture(scope="session")
def zoo_counts() -> dict:
    """The committed exact counts (`convbench baseline --update` writes them)."""
    return json.loads(BASELINE.read_text())["models"]


@pytest.fixture(scope="session")
def _machine_ceilings(tmp_path_factory) -> Path:
    """The machine's measured ceilings, shared by the session's tests: a fact of the machine, measured once per
    setting (threads, dtype), never read from or written to the user's own cache."""
    return tmp_path_factory.mktemp("ceilings")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch, _machine_ceilings):
    """Every test has its own count cache and peers folder and a fixed terminal width: nothing in the user's cache,
    another convbench sweep on the host or the caller's shell changes what a test sees."""
    from convbench.measure import ceiling
    root = tmp_path_factory.mktemp("cache")
    (root / "ceilings").symlink_to(_machine_ceilings, target_is_directory=True)
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(root))
    monkeypatch.setenv("CONVBENCH_PEERS_DIR", str(tmp_path_factory.mktemp("peers")))
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("CONVBENCH_CACHE", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                 "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    ceiling.forget()
    torch.manual_seed(0)
    yield
    ceiling.forget()

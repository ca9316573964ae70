import json
import sys
import textwrap
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


def _synthetic_ceiling(device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",), timer=None):
    """A ceiling far above anything a test measures, made at once: tests that are not about ceilings (test_ceiling.py
    measures real ones) need one to exist, not to be this machine's, and must not wait seconds, or be told the
    machine is busy, for every setting they run under."""
    from convbench.measure import ceiling
    facts = ceiling.machine(torch.device(device))
    peak = {d: ceiling.Peak(100.0, "synthetic test ceiling") for d in dtypes}
    return ceiling.Ceiling(ceiling.cache_key(facts), facts, peak, ceiling.Peak(1000.0, "synthetic test ceiling"),
                           measured="2026-01-01T00:00:00+00:00", host_busy=0.0)


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch, _machine_ceilings, request):
    """Every test has its own count cache and peers folder and a fixed terminal width: nothing in the user's cache,
    another convbench sweep on the host or the caller's shell changes what a test sees."""
    from convbench.measure import ceiling
    root = tmp_path_factory.mktemp("cache")
    real = request.node.get_closest_marker("real_ceiling") is not None
    if not real:  # a test that measures ceilings itself keeps them to itself
        (root / "ceilings").symlink_to(_machine_ceilings, target_is_directory=True)
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(root))
    monkeypatch.setenv("CONVBENCH_PEERS_DIR", str(tmp_path_factory.mktemp("peers")))
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("CONVBENCH_CACHE", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                 "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    if not real:
        monkeypatch.setattr(ceiling, "measure", _synthetic_ceiling)
    ceiling.forget()
    torch.manual_seed(0)
    yield
    ceiling.forget()


@pytest.fixture()
def user_nets(tmp_path, monkeypatch):
    """A user's package of small networks whose forwards return what real networks return, or fail as they fail."""
    (tmp_path / "firsthour.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        import torch.nn.functional as F

        class Head(nn.Module):
            def __init__(self, kind):
                super().__init__()
                self.kind = kind
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.w = nn.Parameter(torch.randn(8, 8))
                self.fc = nn.Linear(8, 10)
            def forward(self, x):
                h = self.conv(x).mean((2, 3))
                h = torch.matmul(h, self.w)          # functional: no module of its own
                h = torch.matmul(h, self.w.t())
                logits = self.fc(h)
                if self.kind == "tuple":
                    return logits, logits * 0.5
                if self.kind == "dict":
                    return {"logits": logits, "features": h}
                if self.kind == "baddict":
                    return {"features": h}
                if self.kind == "str":
                    return "logits"
                return logits

        def plain(): return Head("tensor")
        def tuple_net(): return Head("tuple")
        def dict_net(): return Head("dict")
        def bad_dict(): return Head("baddict")
        def str_net(): return Head("str")
        def raises(): raise RuntimeError("no weights here")
        def forty_two(): return 42
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "firsthour"
    sys.modules.pop("firsthour", None)


"""A successful command writes nothing to stderr but convbench's own lines: no worker traceback, no third-party
deprecation warning."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest


def _cold_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CONVBENCH_CACHE_DIR=str(tmp_path / "cache"), CONVBENCH_PEERS_DIR=str(tmp_path / "peers"), COLUMNS="120")
    return env


def test_a_cold_static_sweep_with_forked_counting_workers_prints_nothing_on_stderr(tmp_path):
    """The counting pool's workers inherited the CLI's SIGTERM handler, and terminating the pool printed a
    ForkPoolWorker traceback on most cold runs; the workers now end on their own, and silently if terminated."""
    for attempt in range(3):
        done = subprocess.run([sys.executable, "-m", "convbench", "profile", "--arch",
                               "alexnet,resnet18,googlenet,vgg11,resnet50",
                               "--metrics", "static", "--out", str(tmp_path / f"run{attempt}")],
                              capture_output=True, text=True, env=_cold_env(tmp_path / str(attempt)), timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr


def test_the_forked_worker_ignores_the_parents_termination_handler():
    import signal

    from convbench import children, interrupts
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        handlers = interrupts.install()
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        children.forked_worker()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        interrupts.restore(handlers)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_fvcore_warnings_never_reach_the_screen():
    from convbench.measure import complexity
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with complexity._fvcore_quiet():
            warnings.warn("torch.jit is deprecated", FutureWarning)
            warnings.warn("torch.jit.script is deprecated", DeprecationWarning)
    assert seen == []


def test_the_environment_reads_fvcores_version_without_importing_it(monkeypatch):
    from convbench.results import environment
    monkeypatch.setitem(sys.modules, "fvcore", None)  # an import would now fail
    assert environment.environment("cpu")["fvcore"] is not None


@pytest.mark.parametrize("missing", [("tomllib", "tomli")])
def test_pyproject_settings_are_never_silently_ignored(monkeypatch, tmp_path, missing):
    """On Python 3.10 [tool.convbench] needs tomli, which pyproject.toml requires there; without a TOML reader the
    import fails loudly instead of returning no settings."""
    from convbench.cli import project
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)
    (tmp_path / "pyproject.toml").write_text("[tool.convbench]\narch = 'x:y'\n")
    with pytest.raises(ImportError):
        project._toml(tmp_path / "pyproject.toml")
    text = (project.Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert "tomli>=1.1; python_version < '3.11'" in text

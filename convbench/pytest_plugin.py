"""convbench's pytest plugin (loaded by pytest wherever convbench is installed): a team guards its own models with a
few lines of test instead of a harness.

    def test_counts(convbench_counts):
        convbench_counts("mynet.models:build", input_shape=(3, 224, 224))   # exact counts against the baseline file

    def test_speed(convbench_benchmark):
        convbench_benchmark("mynet.models:build", batch_size=8)             # pytest-benchmark, convbench's protocol

`convbench_counts` holds params, MACs, activations and saved bytes to the baseline file (`[tool.convbench]
baseline` in pyproject.toml, else convbench-baseline.json beside the rootdir); `pytest --convbench-update` accepts
what changed. `convbench_benchmark` times through pytest-benchmark's `benchmark` fixture in multiples of the
reference workload (convbench.bench), so `--benchmark-save` and `--benchmark-compare-fail` work as usual; the
same model cases are what `convbench gate --arch` (or [tool.convbench] arch) times in lockstep."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

DEFAULT_BASELINE = "convbench-baseline.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convbench")
    group.addoption("--convbench-update", action="store_true", default=False,
                    help="convbench_counts: accept the counts into the baseline file instead of checking them")


def _baseline_file(config: pytest.Config, file: str | Path | None) -> Path:
    if file is not None:
        return Path(file)
    from convbench.cli.project import setting
    return Path(setting("baseline", None, str(Path(config.rootpath) / DEFAULT_BASELINE)))


@pytest.fixture()
def convbench_counts(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """check(arch, input_shape=None, output=None, file=None): the model's exact counts must equal its baseline
    entry; with --convbench-update they become it. Returns the counts."""
    from convbench.analysis import baseline
    from convbench.errors import UserError

    def check(arch: str, input_shape: tuple[int, int, int] | None = None, output: str | None = None,
              file: str | Path | None = None) -> dict[str, Any]:
        path = _baseline_file(request.config, file)
        try:
            current = baseline.compute_static(arch, tuple(input_shape) if input_shape else None, output)
            if request.config.getoption("convbench_update"):
                baseline.update(current, path)
                return current
            recorded = baseline.load(path)
        except UserError as exc:
            pytest.fail(str(exc), pytrace=False)
        changes = baseline.diff({n: recorded[n] for n in current if n in recorded}, current)
        if changes:
            pytest.fail(f"exact counts of {arch} moved from {path}:\n{baseline.format_diff(changes)}\n"
                        "if intended, accept them with `pytest --convbench-update` (or `convbench baseline --update`)",
                        pytrace=False)
        return current
    return check


@pytest.fixture()
def convbench_benchmark(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """run(arch, batch_size=1, input_shape=None, device="cpu", rounds=20, warmup=3): the model's forward timed by
    pytest-benchmark with convbench's protocol, in multiples of the reference workload."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail("convbench_benchmark times through pytest-benchmark's `benchmark` fixture: pip install pytest-benchmark",
                    pytrace=False)
    from convbench.bench import model_case, normalized_round, ratio_clock

    def run(arch: str, batch_size: int = 1, input_shape: tuple[int, int, int] | None = None, device: str = "cpu",
            rounds: int = 20, warmup: int = 3) -> Any:
        case = model_case(arch, batch_size, input_shape, device, rounds, warmup)
        # pytest-benchmark reads time from its fixture's timer; this one counts reference workloads, not seconds.
        benchmark._timer = ratio_clock
        benchmark.extra_info.update(convbench_case=case.name, unit="multiples of convbench's reference workload",
                                    device=device)
        return benchmark.pedantic(normalized_round(case.body(), device), rounds=rounds, iterations=1,
                                  warmup_rounds=warmup)
    return run

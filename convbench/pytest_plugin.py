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


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked(fixture: str, arch: Any, batch_size: Any = 1, input_shape: Any = None, device: Any = "cpu",
             rounds: Any = 1, warmup: Any = 0) -> tuple[int, int, int] | None:
    """A fixture's arguments through the checks the command line's options get; returns the input shape as a tuple.
    Raises UserError, which the fixture turns into one failing line."""
    from convbench.errors import UserError
    from convbench.measure.device import validate_device
    from convbench.run.config import MAX_ITERS, MAX_WARMUP, validate_batches, validate_count, validate_input
    from convbench.zoo.specs import resolve_models
    if not isinstance(arch, str):
        raise UserError(f"{fixture}: arch is a zoo name or package.module:function, got {arch!r}")
    for name, value in (("batch_size", batch_size), ("rounds", rounds), ("warmup", warmup)):
        if not _whole(value):
            raise UserError(f"{fixture}: {name} is a whole number, got {value!r}")
    if input_shape is not None and (isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__")
                                    or len(input_shape) != 3 or not all(_whole(v) for v in input_shape)):
        raise UserError(f"{fixture}: input_shape is (C, H, W), three whole numbers, got {input_shape!r}")
    shape = tuple(input_shape) if input_shape is not None else None
    validate_batches((batch_size,))
    validate_count(rounds, f"{fixture}: rounds", 1, MAX_ITERS)
    validate_count(warmup, f"{fixture}: warmup", 0, MAX_WARMUP)
    validate_input(shape)
    if not isinstance(device, str):
        raise UserError(f"{fixture}: device is cpu or cuda[:N], got {device!r}")
    validate_device(device)
    specs = resolve_models(arch, shape)  # an unknown name or a builder that cannot be imported, said now
    # One model: its own input (a library's published size, a builder's declared one), so that the case the
    # benchmark and the instruction count run is the one `convbench profile` measures.
    return shape if shape is not None or len(specs) != 1 else specs[0].input_shape


def _fail(exc: BaseException) -> None:
    """One line in the test's report, never convbench's own frames: a bad argument or a model that cannot be
    built or counted fails the test as the command line would say it."""
    from convbench.errors import UserError
    from convbench.measure.instructions import CountFailed
    from convbench.run.rows import failure_text
    said = str(exc) if isinstance(exc, (UserError, CountFailed)) else failure_text(exc)
    raise pytest.fail.Exception(said, pytrace=False) from None  # from None: not "during handling of ..." twice


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
        try:
            path = _baseline_file(request.config, file)
            _checked("convbench_counts", arch, input_shape=input_shape)
            current = baseline.compute_static(arch, input_shape, output)
            if request.config.getoption("convbench_update"):
                baseline.update(current, path)
                return current
            recorded = baseline.load(path)
        except UserError as exc:
            _fail(exc)
        changes = baseline.diff({n: recorded[n] for n in current if n in recorded}, current)
        if changes:
            pytest.fail(f"exact counts of {arch} moved from {path}:\n{baseline.format_diff(changes)}\n"
                        "if intended, accept them with `pytest --convbench-update` (or `convbench baseline --update`)",
                        pytrace=False)
        return current
    return check


@pytest.fixture()
def convbench_instructions(request: pytest.FixtureRequest) -> Callable[..., int]:
    """check(arch, batch_size=1, input_shape=None, tolerance=0.01, file=None): the instructions per call of the
    model's forward (valgrind's callgrind, exactly as `convbench gate --measure instructions` counts them) must be
    within `tolerance` of the baseline file's figure; with --convbench-update they become it. Returns the figure,
    and records it in pytest-benchmark's extra_info where the test also uses `benchmark`."""
    from convbench.analysis import baseline
    from convbench.gate.counted import count_instructions
    from convbench.errors import UserError
    from convbench.measure.instructions import CountFailed

    def check(arch: str, batch_size: int = 1, input_shape: tuple[int, int, int] | None = None,
              tolerance: float = 0.01, file: str | Path | None = None) -> int:
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
            pytest.fail(f"convbench_instructions: tolerance is a fraction from 0 to below 1, got {tolerance!r}",
                        pytrace=False)
        name = f"{arch}[b{batch_size}]"
        try:
            path = _baseline_file(request.config, file)
            shape = _checked("convbench_instructions", arch, batch_size, input_shape)
            figure = count_instructions(arch, batch_size, shape)
            if "benchmark" in request.fixturenames:
                request.getfixturevalue("benchmark").extra_info["instructions_per_call"] = figure
            if request.config.getoption("convbench_update"):
                baseline.update_instructions({name: figure}, path)
                return figure
            recorded = baseline.load_instructions(path).get(name)
        except (UserError, CountFailed) as exc:
            _fail(exc)
        if recorded is None:
            pytest.fail(f"{path} holds no instruction count for {name}; accept it with `pytest --convbench-update`",
                        pytrace=False)
        change = figure / recorded - 1
        if abs(change) > tolerance:
            pytest.fail(f"instructions per call of {name} moved {recorded:,} -> {figure:,} ({change:+.2%}, tolerance "
                        f"{tolerance:.2%}) against {path}; if intended, accept it with `pytest --convbench-update`",
                        pytrace=False)
        return figure
    return check


@pytest.fixture()
def convbench_benchmark(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """run(arch, batch_size=1, input_shape=None, device="cpu", rounds=20, warmup=3): the model's forward timed by
    pytest-benchmark with convbench's protocol, in multiples of the reference workload."""
    from convbench.bench import model_case, normalized_round, ratio_clock
    # pytest-benchmark takes a test's timer from its `benchmark` mark (its documented way to choose one); the mark
    # must be in place before its fixture is made, and keeps whatever else the test's own mark says.
    own = request.node.get_closest_marker("benchmark")
    request.node.add_marker(pytest.mark.benchmark(**{**(own.kwargs if own else {}), "timer": ratio_clock}), append=False)
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail("convbench_benchmark times through pytest-benchmark's `benchmark` fixture: pip install pytest-benchmark",
                    pytrace=False)

    def run(arch: str, batch_size: int = 1, input_shape: tuple[int, int, int] | None = None, device: str = "cpu",
            rounds: int = 20, warmup: int = 3) -> Any:
        from convbench.errors import UserError, error_text
        try:
            shape = _checked("convbench_benchmark", arch, batch_size, input_shape, device, rounds, warmup)
            case = model_case(arch, batch_size, shape, device, rounds, warmup)
        except UserError as exc:
            _fail(exc)
        try:
            body = case.body()  # the model built and its input made
        except (Exception, SystemExit) as exc:
            from convbench.zoo.specs import BuildError
            _fail(BuildError(f"building the model failed: {error_text(exc)}"))
        benchmark.extra_info.update(convbench_case=case.name, unit="multiples of convbench's reference workload",
                                    device=device)
        return benchmark.pedantic(normalized_round(body, device), rounds=rounds, iterations=1, warmup_rounds=warmup)
    return run

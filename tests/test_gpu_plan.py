"""benchmarks/gpu_plan.py: the budget arithmetic, a step cut short by SIGINT that still writes its files, and
the tarball after every step. (The whole dry run of both plans runs in CI: .ci/run.)"""
from __future__ import annotations

import signal
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_plan  # noqa: E402
from gpu_plan import Step, Target, run_plan, run_step, share  # noqa: E402


def _step(name: str, limit: float, floor: float, argv=None) -> Step:
    return Step(name, "proves " + name, limit, floor, argv or [sys.executable, "-c", "pass"])


def test_a_step_gets_its_limit_within_what_is_left_after_the_margin_or_nothing():
    assert share(_step("a", 120, 45), remaining=540) == 120
    assert share(_step("a", 120, 45), remaining=100, margin=15) == 85
    assert share(_step("a", 120, 45), remaining=59, margin=15) == 0  # 44 s would be less than it needs


def test_the_plan_ends_within_its_budget_and_says_what_it_skipped(tmp_path):
    now = [1000.0]
    ran = []

    def runner(step, seconds, log, env):  # every step uses all of its share
        ran.append((step.name, seconds))
        now[0] += seconds
        log.write_text("ran\n")
        return 0, False
    steps = [_step("a", 300, 60), _step("b", 200, 60), _step("c", 100, 60), _step("d", 30, 10)]
    record = run_plan("accept", steps, tmp_path / "dest", 540, 1000.0, tmp_path / "results.tgz", "test",
                      clock=lambda: now[0], runner=runner)
    assert ran == [("a", 300), ("b", 200), ("d", 25)]
    assert now[0] - 1000 <= 540 - gpu_plan.TAR_MARGIN_S
    assert [s.outcome for s in record.steps] == ["passed", "passed", "skipped: 40 s left of the budget, it needs 60 s", "passed"]
    with tarfile.open(tmp_path / "results.tgz") as tar:
        names = tar.getnames()
    assert {"dest/steps.json", "dest/logs/a.log", "dest/logs/d.log"} <= set(names)


def test_a_dry_run_gives_each_step_three_times_its_limit_and_a_failed_step_shows_its_log(tmp_path, capsys):
    # A CPU runner slower than the last one must not cut a step its GPU limit was sized for; what failed is printed.
    now = [1000.0]

    def runner(step, seconds, log, env):
        now[0] += 100
        log.write_text("".join(f"line {i}\n" for i in range(40)) + "timer_truth  fail 1.200\n")
        return (1 if step.name == "b" else 0), False
    assert Target(dry=True).slack == 3 and Target(dry=False).slack == 1
    steps = [_step("a", 45, 20), _step("b", 35, 15)]
    record = run_plan("accept", steps, tmp_path / "dest", 540 * 3, 1000.0, None, "test", clock=lambda: now[0],
                      runner=runner, slack=3)
    assert [s.share for s in record.steps] == [135, 105]
    out = capsys.readouterr().out
    assert "a: passed after 100 s\n== b" in out and "b: failed (exit 1) after 100 s" in out
    shown = [line for line in out.splitlines() if line.startswith("  | ")]
    assert len(shown) == gpu_plan.LOG_TAIL and shown[-1] == "  | timer_truth  fail 1.200"


@pytest.mark.parametrize("launched", ["in the foreground", "in the background (SIGINT ignored)"])
def test_a_step_past_its_share_gets_sigint_and_its_writers_finish(tmp_path, launched):
    # A shell without job control starts `gpu.sh ... &` with SIGINT ignored, and an ignored signal stays ignored
    # across exec: the step must still get a SIGINT it can act on.
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if "background" in launched else signal.default_int_handler)
    try:
        _cut_step_finishes_its_writers(tmp_path)
    finally:
        signal.signal(signal.SIGINT, before)


def _cut_step_finishes_its_writers(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f'''
        import time
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            open({str(tmp_path / "written")!r}, "w").write("rows so far")
            raise SystemExit(130)
    '''))
    rc, cut = run_step(_step("slow", 1, 1, [sys.executable, str(script)]), 1.5, tmp_path / "slow.log", {})
    assert (rc, cut) == (130, True) and (tmp_path / "written").read_text() == "rows so far"


@pytest.mark.parametrize("plan", gpu_plan.PLANS)
def test_every_plan_fits_one_call_and_swaps_every_cuda_only_part_in_a_dry_run(plan, tmp_path):
    gpu = gpu_plan.steps_for(plan, Target(dry=False), tmp_path)
    dry = gpu_plan.steps_for(plan, Target(dry=True), tmp_path)
    if plan == "compare":  # the dry run proves the graphs step on one comparison, not all four
        assert [s.name for s in dry] == ["compare-all", "compare-graphs-reduction"]
        assert {s.name for s in dry} <= {s.name for s in gpu}
    else:
        assert [s.name for s in gpu] == [s.name for s in dry]
    assert sum(s.floor for s in gpu) + gpu_plan.TAR_MARGIN_S <= gpu_plan.BUDGET_S
    assert all(s.limit <= gpu_plan.BUDGET_S - gpu_plan.TAR_MARGIN_S for s in gpu)
    for step in dry:
        options = dict(zip(step.argv, step.argv[1:]))
        assert options.get("--device", "cpu") == "cpu" and options.get("--dtype") != "fp16", step.argv
        assert "graphs" not in options.get("--mode", ""), step.argv


def test_the_zoo_halves_cover_the_zoo_once_and_weigh_about_the_same(zoo_counts):
    halves = [gpu_plan._zoo_part(i, 2).split(",") for i in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(zoo_counts)
    macs = [sum(zoo_counts[n]["macs"] for n in half) for half in halves]
    assert max(macs) / min(macs) < 1.1


def test_a_plan_called_again_replaces_its_own_steps_folders_and_says_so(tmp_path, capsys):
    dest = tmp_path / "dest"
    held = dest / "profile"
    held.mkdir(parents=True)
    (held / "profile.csv").write_text("model\nfrom the failed call\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def runner(step, seconds, log, env):
        out = Path(step.argv[step.argv.index("--out") + 1])
        assert not out.exists()  # the earlier call's folder is gone before the step runs
        out.mkdir(parents=True)
        return 0, False
    steps = [_step("profile", 30, 10, ["x", "--out", str(held)]), _step("outside", 30, 10, ["x", "--out", str(outside)])]
    with pytest.raises(AssertionError):  # a folder outside the plan's own is never removed
        run_plan("accept", steps, dest, 540, 0.0, None, "test", clock=lambda: 0.0, runner=runner)
    assert outside.exists() and f"profile: replacing {held.resolve()}, an earlier call's" in capsys.readouterr().out

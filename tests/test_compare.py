"""`convbench compare`: the papers' arithmetic, counted exactly; the measurement path end to end on the CPU."""
import math
import pandas as pd
import pytest
import torch

from convbench.zoo.blocks.resnext import EarlyConcat, GroupedBottleneck, SplitTransformMerge, load_from_grouped
from cli_helpers import run
from convbench.run.verdicts import verdict
from convbench.run.compare import compare
from convbench.zoo.comparisons import COMPARISONS, get_cases
from convbench.measure.complexity import count_params
from convbench.measure.paired import median_ratio
from hook_counter import analytic_counts



def counted_ratio(case, channels=None):
    shape = channels and (channels, *case.shape[1:]) or case.shape
    macs = []
    for v in case.variants:
        with torch.device("meta"):
            macs.append(analytic_counts(v.build(shape[0]), (1, *shape))["macs"])
    return [m / macs[0] if macs[0] else math.nan for m in macs]


@pytest.mark.parametrize("case", [c for name in COMPARISONS for c in get_cases(name) if not c.whole_network],
                         ids=lambda c: c.name)
def test_counted_ratio_matches_the_claim_where_the_arithmetic_is_exact(case):
    ratios = counted_ratio(case)
    for variant, ratio in zip(case.variants, ratios):
        if variant.claimed_ratio is None:
            continue
        if case.comparison == "reduction":
            # 35 -> 17, not 17.5: the pooled grid holds (17/35)^2 of the pixels, not exactly a quarter
            assert ratio == pytest.approx(0.25 * (4 * 17 * 17) / (35 * 35), rel=1e-12)
        elif case.name == "cardinality at equal complexity":
            assert abs(ratio - 1) < 0.03  # Table 2 keeps complexity within a few percent, not exactly
        elif case.comparison == "pooling":
            assert math.isnan(ratio)  # pooling holds no MACs: its claim is of the work a window reads
        else:
            assert ratio == pytest.approx(variant.claimed_ratio, rel=1e-12), variant.name


def test_seed_worked_numbers_for_the_resnext_forms():
    c, a, b = GroupedBottleneck(256, 32, 4), SplitTransformMerge(256, 32, 4), EarlyConcat(256, 32, 4)
    assert c.conv1.weight.numel() == 256 * 1 * 1 * 128 == 32768
    assert sum(p.conv1.weight.numel() for p in b.paths) == 256 * 1 * 1 * 4 * 32 == 32768
    assert c.conv2.weight.numel() == 128 // 32 * 3 * 3 * 128 == 4608
    assert sum(p.conv2.weight.numel() for p in a.paths) == 4 * 3 * 3 * 4 * 32 == 4608
    assert count_params(a) == count_params(b) == count_params(c) == 71168


@pytest.mark.parametrize("form", [SplitTransformMerge, EarlyConcat])
@pytest.mark.parametrize("train", [False, True])
def test_resnext_forms_compute_the_same_function(form, train):
    torch.manual_seed(0)
    c = GroupedBottleneck(64, 8, 4)
    with torch.no_grad():  # non-trivial BN statistics, so a slicing mistake would show
        for bn in (c.bn1, c.bn2, c.bn3):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    other = form(64, 8, 4)
    load_from_grouped(other, c)
    c.train(train)
    other.train(train)
    x = torch.randn(2, 64, 14, 14)
    with torch.no_grad():
        assert torch.allclose(other(x), c(x), atol=1e-5)


def test_the_paired_ratio_takes_its_interval_from_exact_ranks():
    # n = 11: [x(2), x(10)] holds the median with 98.8% (x(3), x(9) only 93.5%, short of 95%)
    mid, lo, hi = median_ratio([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    assert (mid, lo, hi) == (6.0, 2.0, 10.0)
    assert all(v != v for v in median_ratio([1.0, 2.0, 3.0, 4.0, 5.0])[1:])  # too few pairs: no interval


def test_verdict_wording():
    assert verdict(0.72, 0.86)[0] == pytest.approx(0.5)
    assert verdict(0.72, 1.1)[1].startswith("no speed-up")
    assert verdict(1.0, 1.8)[1].startswith("equal MACs")
    # ResNeXt 8x14d counts 1.026x the MACs of 1x64d: the same complexity to its authors, and no share of a saving
    # to divide by (it read -13.42 before)
    share, text = verdict(1.026, 1.35)
    assert math.isnan(share) and text == "equal MACs (within 5%); 1.35x the time"
    share, text = verdict(1.3, 1.2)
    assert math.isnan(share) and text == "1.20x the time for 1.30x the MACs"


def test_compare_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run(capsys, "compare", "grouped", "--shape", "64,14,14", "--pairs", "6", "--warmup", "1",
                            "--batch-size", "2", "--out", str(out))
    assert code == 0, err
    df = pd.read_csv(out / "compare.csv")
    for col in ("comparison", "case", "variant", "params", "macs", "claimed_ratio", "counted_ratio", "measured_ratio"):
        assert col in df.columns
    assert (out / "compare.md").exists()
    assert set(df.status) == {"ok"}
    assert list(df[df.case == "ResNeXt block forms, 32x4d"].variant) == ["(c) grouped conv", "(b) early concat", "(a) split-transform-merge"]
    forms = df[df.case == "ResNeXt block forms, 32x4d"].set_index("variant")
    assert forms.loc["(a) split-transform-merge", "max_abs_diff"] < 1e-4
    assert forms.loc["(b) early concat", "counted_ratio"] == 1.0
    grouped = df[df.variant == "grouped G=32"].iloc[0]
    assert grouped.params == 64 // 32 * 9 * 64 and grouped.macs == 14 * 14 * 64 * 2 * 9
    assert grouped.counted_ratio == pytest.approx(1 / 32) and grouped.params_ratio == pytest.approx(1 / 32)
    assert grouped.measured_ratio > 0 and grouped.ratio_ci_low <= grouped.measured_ratio <= grouped.ratio_ci_high
    assert "claim:" in stdout
    for row in df[df.variant != df.baseline].itertuples():  # every verdict is said under its table
        assert f"{row.variant}: {' '.join(row.verdict.split()[:3])}" in stdout, row.variant


def test_whole_network_cases_use_the_zoo():
    cases = {c.name: c for c in get_cases("factorization") + get_cases("asymmetric") if c.whole_network}
    google = cases["GoogLeNet: 5x5 vs two 3x3 branches"]
    base, factored = (count_params(v.build(3)) for v in google.variants)
    # GoogLeNet's 5x5s read narrow reductions (16 -> 32 in 3a): factored as BN-Inception does (expand in the
    # first 3x3), 16*32*9 + 32*32*9 = 13,824 weights replace 16*32*25 = 12,800, so the "saving" is a cost here.
    assert (base, factored) == (7005832, 7292264)
    assert counted_ratio(google) == [1.0, 1639721984 / 1582671872]
    v3 = cases["Inception-v3: 7x7 vs 1x7+7x1 at 17x17"]
    assert [count_params(v.build(3)) for v in v3.variants] == [36346056, 23834568]


def test_library_call_and_bad_names(capsys):
    df = compare("reduction", shape=(16, 9, 9), pairs=6, warmup=0)
    assert list(df.variant) == ["conv then pool", "pool then conv", "parallel conv | pool"]
    assert list(df.macs) == [9 * 9 * 16 * 32 * 9, 4 * 4 * 16 * 32 * 9, 4 * 4 * 16 * 16 * 9]
    code, _, err = run(capsys, "compare", "nosuch")
    assert code == 2 and "factorization, asymmetric, reduction, grouped, pooling, all" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "compare", "grouped", "--shape", "64,14")
    assert code == 2 and "--shape is C,H,W" in err


@pytest.mark.parametrize("case", [c for name in COMPARISONS for c in get_cases(name) if not c.whole_network],
                         ids=lambda c: c.name)
def test_dispatch_and_fvcore_count_every_block_alike(case):
    from convbench.measure.complexity import dispatch_counts, fvcore_counts, materialize
    for v in case.variants:
        with torch.device("meta"):
            meta = v.build(case.shape[0])
        dispatched = dispatch_counts(meta, (1, *case.shape))
        traced = fvcore_counts(materialize(meta), (1, *case.shape))
        assert (dispatched["macs"], dispatched["acts"]) == (traced["macs"], traced["acts"]), v.name


def test_a_side_that_changes_speed_within_its_pairs_is_said():
    from convbench.measure.paired import drift, drift_note
    steady = [1.7, 1.8, 1.7, 1.75, 1.72, 1.71, 1.69, 1.74, 1.7]
    switched = [1.7] * 10 + [8.8] * 5  # the last 5 of 15 pairs of G=32 ran about 5x slower
    assert drift(steady) == pytest.approx(1.0, abs=0.05) and drift_note("variant", steady) is None
    assert drift(switched) == pytest.approx(8.8 / 1.7)
    assert drift_note("variant", switched).startswith("the variant's time moved 5.2x between the first and the last third")
